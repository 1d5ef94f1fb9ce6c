import pytest
import torch
from torch import nn

from refbench.models import get_workload
from refbench.models.data import seq2seq
from refbench.models.transformer import MultiHeadAttention, sinusoidal_positions


def batch(size=6, seed=0):
    return get_workload("transformer_seq2seq").example_batch(size, seed=seed)


def test_logits_shape_and_greedy_output_shape():
    workload = get_workload("transformer_seq2seq")
    model = workload.make().eval()
    b = batch()
    assert workload.forward(model, b).shape == (6, 11, seq2seq.VOCAB_SIZE)
    assert model.generate(b["src"], 11).shape == (6, 11)


def test_padding_does_not_change_the_output():
    model = get_workload("transformer_seq2seq").make().eval()
    src = torch.tensor([[3, 4, 5, 0, 0]])
    tgt = torch.tensor([[1, 5, 4]])
    wider = torch.cat([src, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    assert torch.allclose(model(src, tgt), model(wider, tgt), atol=1e-5)


def test_decoder_is_causal():
    model = get_workload("transformer_seq2seq").make().eval()
    src = torch.tensor([[3, 4, 5, 6]])
    a, b = torch.tensor([[1, 6, 5, 4]]), torch.tensor([[1, 6, 9, 9]])
    assert torch.allclose(model(src, a)[:, :2], model(src, b)[:, :2], atol=1e-6)
    assert not torch.allclose(model(src, a)[:, 2:], model(src, b)[:, 2:])


def test_softmax_is_a_swappable_module_and_sdpa_computes_the_same():
    workload = get_workload("transformer_seq2seq")
    torch.manual_seed(0)
    eager = workload.make().eval()
    sdpa = workload.make(attention="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    attentions = [m for m in eager.modules() if isinstance(m, MultiHeadAttention)]
    assert len(attentions) == 6 and all(type(m.softmax) is nn.Softmax and m.softmax.dim == -1 for m in attentions)
    b = batch(8)
    assert torch.allclose(workload.forward(eager, b), workload.forward(sdpa, b), atol=1e-5)

    calls = []
    for m in attentions:  # whatever replaces the module is what computes the attention weights
        m.softmax.register_forward_hook(lambda mod, args, out: calls.append(out.sum(-1)))
    workload.forward(eager, b)
    assert len(calls) == 6 and all(torch.allclose(c, torch.ones_like(c)) for c in calls)


def test_triton_softmax_patch_matches_eager():
    from refbench.kernels import patch_model

    workload = get_workload("transformer_seq2seq")
    model = workload.make().eval()
    b = batch(2)
    expected = workload.forward(model, b)
    assert len(patch_model(model, ops=("softmax",))) == 6
    assert torch.allclose(workload.forward(model, b), expected, atol=1e-4)


def test_sinusoidal_positions():
    pe = sinusoidal_positions(50, 8)
    assert pe.shape == (50, 8)
    assert torch.allclose(pe[:, 0], torch.sin(torch.arange(50.0)))
    assert torch.allclose(pe[:, 1], torch.cos(torch.arange(50.0)))
    assert torch.allclose(pe[3, 7], torch.cos(torch.tensor(3 / 10000 ** (6 / 8))))


def test_multi_head_attention_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiple of heads"):
        MultiHeadAttention(30, 4)


@pytest.mark.parametrize("attention", ["softmax", "sdpa"])
def test_overfits_a_tiny_batch(attention):
    """Eight reversal strings learnt exactly by greedy decoding: the whole train-and-decode path works."""
    workload = get_workload("transformer_seq2seq")
    model = workload.make(attention=attention)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    b = batch(8)
    for _ in range(150):
        workload.train_step(model, b, optimizer)
    model.eval()
    assert torch.equal(model.generate(b["src"], 11), b["tgt"][:, 1:])


@pytest.mark.slow  # over a minute of training on 2 CPU cores; CI's convergence suite keeps to 5 minutes
@pytest.mark.convergence
def test_quick_target_on_held_out_reversals():
    """>= 95% exact reversals within the quick target's budget (about 21 s of training on 2 idle cores)."""
    from refbench.run.convergence import converge

    result = converge(get_workload("transformer_seq2seq"), "quick")
    assert result.reached and result.dataset == "synthetic-reverse", f"best {result.best:.3f}"
