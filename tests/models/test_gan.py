import pytest
import torch
from torch import nn

from refbench.run.convergence import converge
from refbench.models import count_parameters, get_workload
from refbench.models import fid
from refbench.models.gan import gradient_penalty
from tests.models import workload_checks as checks

NAMES = ["dcgan", "wgan_gp"]
GENERATOR = (100 * 6272 + 6272) + 2 * 6272 + (128 * 64 * 16 + 64) + 2 * 64 + (64 * 16 + 1)   # 778,305
CRITIC = (64 * 16 + 64) + (64 * 128 * 16 + 128) + (6272 + 1)                                 # 138,561 + BatchNorm


@pytest.mark.parametrize("name, parameters", [("dcgan", GENERATOR + CRITIC + 2 * 128), ("wgan_gp", GENERATOR + CRITIC)])
def test_parameter_counts(name, parameters):
    assert count_parameters(get_workload(name).make()) == parameters


@pytest.mark.parametrize("name", NAMES)
def test_generator_draws_images_in_range_and_critic_scores_each(name):
    workload = get_workload(name)
    model = workload.make().eval()
    real, z = workload.example_batch(6)
    images = workload.eval_step(model, (real, z))
    assert images.shape == real.shape == (6, 1, 28, 28) and z.shape == (6, 100)
    assert images.abs().max() <= 1
    assert model.critic(images).shape == (6,)


def linear_critic(weight_norm: float) -> nn.Module:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 1))
    with torch.no_grad():
        critic[1].weight.copy_(torch.randn(1, 28 * 28)).mul_(weight_norm / critic[1].weight.norm())
    return critic


@pytest.mark.parametrize("weight_norm, penalty", [(1.0, 0.0), (3.0, 4.0), (0.5, 0.25)])
@pytest.mark.parametrize("scale", [1.0, 1024.0])
def test_gradient_penalty_of_a_linear_critic(weight_norm, penalty, scale):
    """A linear critic's gradient is its weight everywhere: the penalty is (|w| - 1)^2."""
    real, fake = torch.randn(5, 1, 28, 28), torch.randn(5, 1, 28, 28)
    assert gradient_penalty(linear_critic(weight_norm), real, fake, scale=scale).item() == pytest.approx(penalty, abs=1e-4)


def test_gradient_penalty_of_a_quadratic_critic():
    """critic(x) = |x|^2 / 2 has gradient x; with real == fake the interpolate is x itself."""
    x = torch.randn(4, 1, 28, 28)
    critic = lambda images: images.flatten(1).square().sum(1) / 2
    expected = (x.flatten(1).norm(dim=1) - 1).square().mean()
    assert gradient_penalty(critic, x, x).item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_reaches_the_critic_weights():
    critic = linear_critic(3.0)
    gradient_penalty(critic, torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28)).backward()
    weight = critic[1].weight
    assert torch.allclose(weight.grad, 2 * (3.0 - 1) * weight / 3.0, atol=1e-5)  # d(|w|-1)^2/dw


@pytest.mark.parametrize("name", NAMES)
def test_critic_and_generator_steps_lower_their_losses(name):
    workload = get_workload(name)
    model = workload.make()
    optimizers = workload.configure_optimizer(model, workload.recipe("fast"))
    real, z = workload.example_batch(16)
    before = workload.loss(model, (real, z)).item()
    for _ in range(3):
        loss = workload.critic_loss(model.critic, real, model.generator(z).detach())
        optimizers.critic.zero_grad()
        loss.backward()
        optimizers.critic.step()
    assert workload.loss(model, (real, z)).item() < before
    before = workload.generator_loss(model.critic, model.generator(z)).item()
    for _ in range(3):
        loss = workload.generator_loss(model.critic, model.generator(z))
        optimizers.generator.zero_grad()
        loss.backward()
        optimizers.generator.step()
    assert workload.generator_loss(model.critic, model.generator(z)).item() < before


@pytest.mark.parametrize("name, critic_steps", [("dcgan", 1), ("wgan_gp", 5)])
def test_generator_steps_once_per_critic_steps(name, critic_steps):
    workload = get_workload(name)
    model = workload.make()
    optimizers = workload.configure_optimizer(model, workload.recipe("fast"))
    batch = workload.example_batch(8)
    start = [p.clone() for p in model.generator.parameters()]
    for _ in range(critic_steps - 1):
        workload.train_step(model, batch, optimizers, scaler=None)
    assert all(torch.equal(a, b) for a, b in zip(start, model.generator.parameters()))
    workload.train_step(model, batch, optimizers, scaler=None)
    assert not all(torch.equal(a, b) for a, b in zip(start, model.generator.parameters()))
    assert all(p.requires_grad for p in model.critic.parameters())



@pytest.mark.parametrize("name", NAMES)
def test_judged_by_fid_fmnist_and_says_so(name):
    workload = get_workload(name)
    assert any("FID-FMNIST" in note and "not Inception FID" in note for note in workload.notes.own_choices)
    assert all(not t.higher_is_better and t.metric == "fid_fmnist_ratio" for t in workload.targets.values())


# ----- the judge -----

def test_frechet_distance_of_known_gaussians():
    """For b = 2a + m: |mean_a - mean_b|^2 + tr(S + 4S - 2 * 2S) = |mean_a + m|^2 + tr(S), from a's sample statistics."""
    a = torch.randn(4000, 8, dtype=torch.float64) @ torch.randn(8, 8, dtype=torch.float64)
    m = torch.arange(8, dtype=torch.float64)
    expected = (a.mean(0) + m).square().sum() + torch.cov(a.T).trace()
    assert fid.frechet_distance(a, 2 * a + m) == pytest.approx(expected.item(), rel=1e-6)
    assert fid.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fid.frechet_distance(a, a + m) == pytest.approx(m.square().sum().item(), rel=1e-6)


def test_real_floor_is_small_and_grows_with_a_shift():
    features = torch.randn(2000, 4)
    assert fid.real_floor(features) < 0.05
    assert fid.frechet_distance(features[:1000], features[1000:] + 1) > 3


@pytest.fixture(scope="module")
def feature_net():
    from refbench.errors import RefbenchError
    try:
        return fid.feature_net()
    except RefbenchError as exc:
        pytest.skip(str(exc))


def test_feature_network_classifies_fashion_mnist_and_is_cached(feature_net, monkeypatch):
    assert feature_net.accuracy > 0.8
    assert fid.cache_file().is_file() and fid.cache_file().is_relative_to(fid.cache_root().parent)
    monkeypatch.setattr(fid, "_networks", {})
    monkeypatch.setattr(fid, "train_feature_net", lambda **kw: pytest.fail("trained again instead of loading the cache"))
    again = fid.feature_net()
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), feature_net.state_dict().values()))


def test_evaluate_reports_distance_floor_and_untrained_reference(feature_net, real_data):
    workload = get_workload("dcgan")
    workload.eval_samples = 2000
    test = real_data(workload.load_data, "test")
    assert test.x.min() == -1 and test.x.max() == 1
    torch.manual_seed(0)
    metrics = workload.evaluate(workload.make(), test)
    assert metrics["fid_fmnist"] == pytest.approx(metrics["fid_fmnist_untrained"], rel=1e-6)  # seed 0 is the reference
    assert metrics["fid_fmnist_ratio"] == pytest.approx(1.0, rel=1e-6)
    assert metrics["fid_fmnist_floor"] < 0.05 * metrics["fid_fmnist"]
    real_as_fake = workload.evaluate(_Replay(test.x[:2000]), test)
    assert real_as_fake["fid_fmnist_ratio"] < 0.05


class _Replay(nn.Module):
    """A 'GAN' whose generator returns real images in turn: what a perfect generator would score."""

    def __init__(self, images):
        super().__init__()
        self.generator = _Stream(images)


class _Stream(nn.Module):
    def __init__(self, images):
        super().__init__()
        self.images, self.offset = images, 0

    def forward(self, z):
        out = self.images[self.offset:self.offset + len(z)]
        self.offset += len(z)
        return out


def assert_distance_falls(name, real_data):
    workload = get_workload(name)
    result = real_data(converge, workload, "quick")
    assert result.dataset == "fashion-mnist"
    assert result.reached and result.best <= workload.targets["quick"].threshold
    assert result.curve[-1].step <= 500
    assert result.curve[-1].metrics["fid_fmnist"] > result.curve[-1].metrics["fid_fmnist_floor"]


@pytest.mark.slow  # over a minute of training on 2 CPU cores; CI's convergence suite keeps to 5 minutes
@pytest.mark.convergence
def test_dcgan_distance_falls_within_a_few_hundred_cpu_steps(real_data):
    """Below 30% of the untrained generator's FID-FMNIST (about 200 steps)."""
    assert_distance_falls("dcgan", real_data)


@pytest.mark.slow  # over a minute of training on 2 CPU cores; CI's convergence suite keeps to 5 minutes
@pytest.mark.convergence
def test_wgan_gp_distance_falls_within_a_few_hundred_cpu_steps(real_data):
    """Below 60% of the untrained generator's FID-FMNIST (about 200 critic steps, 25 s on 2 idle cores)."""
    assert_distance_falls("wgan_gp", real_data)
