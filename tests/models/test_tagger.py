import pytest
import torch

from refbench.models import get_workload
from refbench.models.data import chinese
from refbench.models.data._sequences import SequenceSplit
from refbench.models.transformer import MultiHeadAttention

ENCODERS = ["transformer", "bilstm"]


def sentences():
    """Two sentences, the second shorter and padded."""
    words = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    chars = torch.randint(2, 100, (2, 4, chinese.WORD_CHARS), generator=torch.Generator().manual_seed(0))
    chars[words == 0] = 0
    return words, chars


@pytest.mark.parametrize("encoder", ENCODERS)
def test_logits_per_token_and_padding_has_no_effect(encoder):
    model = get_workload("pos_tagger").make(encoder=encoder).eval()
    words, chars = sentences()
    logits = model(words, chars)
    assert logits.shape == (2, 4, 44)
    short = model(words[1:, :2], chars[1:, :2])
    assert torch.allclose(logits[1:, :2], short, atol=1e-5)


def test_sdpa_variant_computes_the_same():
    workload = get_workload("pos_tagger")
    eager, sdpa = workload.make().eval(), workload.make(attention="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    words, chars = sentences()
    assert torch.allclose(eager(words, chars), sdpa(words, chars), atol=1e-5)


def test_document_size_is_bert_base_shaped():
    with torch.device("meta"):
        model = get_workload("pos_tagger").make(size="document")
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    assert len(attentions) == 12 and attentions[0].heads == 12 and model.classifier.in_features == 768


def test_document_recipe_is_the_documents():
    """Adam at its default lr, batch 32, 10 epochs (document 001 section 4.2)."""
    recipe = get_workload("pos_tagger").recipe("document")
    assert (recipe.optimizer, recipe.lr, recipe.batch_size, recipe.epochs, recipe.weight_decay) == (
        "adam", 1e-3, 32, 10, 0.0)
    assert recipe.lr == torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults["lr"]


def test_unseen_words_are_told_apart_by_their_characters():
    model = get_workload("pos_tagger").make().eval()
    words = torch.full((1, 2), chinese.UNK)
    chars = torch.tensor([[[5, 6, 0, 0], [7, 0, 0, 0]]])
    features = model.features(words, chars)
    assert not torch.allclose(features[0, 0], features[0, 1])
    expected = model.features.words.weight[chinese.UNK] + model.features.chars.weight[[5, 6]].mean(0)
    assert torch.allclose(features[0, 0], expected, atol=1e-6)


def test_word_dropout_only_in_training():
    model = get_workload("pos_tagger").make()
    words, chars = sentences()
    model.eval()
    assert torch.equal(model.features(words, chars), model.features(words, chars))
    model.train()
    torch.manual_seed(1)
    outputs = {tuple(model.features(words, chars)[0, :, 0].tolist()) for _ in range(20)}
    assert len(outputs) > 1


@pytest.mark.parametrize("encoder", ENCODERS)
def test_overfits_a_tiny_batch(encoder):
    workload = get_workload("pos_tagger")
    model = workload.make(encoder=encoder)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = {k: v[:, :12] for k, v in workload.example_batch(2).items()}
    for _ in range(30):
        workload.train_step(model, batch, optimizer)
    model.eval()
    assert (workload.forward(model, batch).argmax(-1) == batch["tags"]).float().mean() == 1


def test_evaluate_reports_the_baseline_beside_the_accuracy():
    workload = get_workload("pos_tagger")
    tags = torch.tensor([[1, 2, 3], [4, 5, chinese.IGNORE]])
    split = SequenceSplit({"words": torch.tensor([[2, 3, chinese.UNK], [4, 5, 0]]),
                           "chars": torch.full((2, 3, chinese.WORD_CHARS), 2),
                           "tags": tags, "baseline": torch.tensor([[1, 2, 0], [0, 0, 0]])},
                          torch.tensor([3, 2]), "peoples-daily-1998", "test")

    tag_of_word = torch.tensor([0, 0, 1, 2, 4, 5])   # right for every seen word; unseen (1) gets tag 0

    class Oracle(torch.nn.Module):
        def forward(self, words, chars):
            return torch.nn.functional.one_hot(tag_of_word[words], 44).float()

    metrics = workload.evaluate(Oracle(), split)
    assert metrics == {"accuracy": 4 / 5, "baseline_accuracy": 2 / 5, "unseen_word_accuracy": 0.0}


def test_real_split_feeds_the_model(real_data):
    workload = get_workload("pos_tagger")
    split = real_data(workload.load_data, "test")
    assert split.dataset == "peoples-daily-1998"
    batch = next(workload.train_batches(split, 8, generator=torch.Generator().manual_seed(0)))
    loss = workload.loss(workload.make(encoder="bilstm"), batch)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(44.0)).item(), rel=0.2)


@pytest.mark.slow  # over a minute of training on 2 CPU cores; CI's convergence suite keeps to 5 minutes
@pytest.mark.convergence
def test_bilstm_quick_target(real_data):
    """BiLSTM >= 93% token accuracy within 90 s (65.6 s measured on one busy CPU thread), baseline beside it."""
    from refbench.run.convergence import converge

    result = real_data(converge, get_workload("pos_tagger"), "quick-bilstm")
    assert result.reached, f"best {result.best:.3f} after {result.train_s:.0f}s"
    assert result.curve[-1].metrics["baseline_accuracy"] == pytest.approx(0.916, abs=0.002)


@pytest.mark.slow  # over a minute of training on 2 CPU cores; CI's convergence suite keeps to 5 minutes
@pytest.mark.convergence
def test_transformer_quick_target(real_data):
    """The BERT-style Transformer >= 85% within 150 s (about 40 s of training on 2 idle cores)."""
    from refbench.run.convergence import converge

    result = real_data(converge, get_workload("pos_tagger"), "quick")
    assert result.reached, f"best {result.best:.3f} after {result.train_s:.0f}s"
