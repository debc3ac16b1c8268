"""bloomz_tune inside TRL's SFTTrainer: packed BLOOM samples see only themselves, BLOOMZ's loss, our collator."""

from __future__ import annotations

import pytest
import torch

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.bloom import causal_lm, patch_bloom
from bloomz_tune.model.packed_inputs import packed_segment_ids, segments_from_positions
from bloomz_tune.training.trl_support import (
    PackedCollator,
    count_step_items,
    sample_losses,
    target_runs,
    use_bloomz_loss,
)

PAIRS = [
    ("Question: what is the capital of France? Answer:", "Paris"),
    ("Translate to French: the red house.", "la maison rouge"),
    ("The movie was great and the actors were wonderful. Positive or negative?", "positive"),
    ("def add(a, b):", "return a + b"),
    ("这部电影很好，演员们很棒。", "正面"),
    ("La película fue excelente.", "sí"),
]


def _sft_step(model, tokenizer, tmp_path, loss_type=None):
    """One SFTTrainer(packing=True) step at learning rate 0: (the packed backbone call's inputs and hidden states,
    the step's loss)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    seen = []

    def hook(module, args, kwargs, output):
        if not seen and torch.is_grad_enabled() and "position_ids" in kwargs:  # TRL's fused-head call
            seen.append({"input_ids": kwargs["input_ids"].detach().clone(),
                         "position_ids": kwargs["position_ids"].detach().clone(),
                         "hidden": output[0].detach().clone()})

    backbone = causal_lm(model).transformer
    handle = backbone.register_forward_hook(hook, with_kwargs=True)
    dataset = Dataset.from_list([{"prompt": p, "completion": " " + c} for p, c in PAIRS])
    args = SFTConfig(output_dir=str(tmp_path), packing=True, max_length=256, per_device_train_batch_size=len(PAIRS),
                     max_steps=1, learning_rate=0.0, weight_decay=0.0, report_to="none", use_cpu=True,
                     save_strategy="no", disable_tqdm=True, logging_steps=1, dataloader_num_workers=0, seed=0,
                     bf16=False, fp16=False)  # fp32: TRL turns bf16 on by default
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    if loss_type is not None:
        use_bloomz_loss(trainer, loss_type)
    loss = trainer.train().training_loss
    handle.remove()
    assert seen or loss_type is not None, "the trainer never called the backbone with gradients"
    return (seen[0] if seen else None), loss, trainer


def _alone(model, packed):
    """Each packed sample run alone through the same model: (max |logit difference|, number of samples)."""
    positions = packed["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist() + [positions.numel()]
    head = causal_lm(model).get_output_embeddings()
    packed_logits = head(packed["hidden"][0])
    worst, samples = 0.0, 0
    with torch.no_grad():
        for a, b in zip(starts[:-1], starts[1:]):
            ids = packed["input_ids"][0, a:b]
            if b - a < 2:  # the padding TRL adds to a multiple of 8: one-token segments
                continue
            alone = causal_lm(model)(input_ids=ids[None]).logits[0]
            worst = max(worst, float((alone - packed_logits[a:b]).abs().max()))
            samples += 1
    return worst, samples


def test_trl_packing_on_patched_bloom_equals_each_sample_alone(tiny_model, tiny_tokenizer, tmp_path, capsys):
    model = patch_bloom(tiny_model)
    packed, loss, trainer = _sft_step(model, tiny_tokenizer, tmp_path)
    assert bool((packed["position_ids"][0, 1:] == 0).any()), "TRL did not pack several samples into one row"
    model.eval()
    worst, samples = _alone(model, packed)
    alone_loss = _alone_loss(model, trainer)
    print(f"\nTRL packing, patched: {samples} samples, max |logit diff| {worst:.2e}, loss {loss:.6f} vs alone "
          f"{alone_loss:.6f} (|d| {abs(loss - alone_loss):.2e})")
    assert samples >= 3
    assert worst < 1e-5
    assert abs(loss - alone_loss) < 1e-5


def test_trl_packing_on_stock_bloom_mixes_samples(tiny_model, tiny_tokenizer, tmp_path):
    """The control: the same step on an unpatched BLOOM lets later samples see earlier ones."""
    packed, loss, trainer = _sft_step(tiny_model, tiny_tokenizer, tmp_path)
    tiny_model.eval()
    worst, samples = _alone(tiny_model, packed)
    alone_loss = _alone_loss(tiny_model, trainer)
    print(f"\nTRL packing, unpatched: {samples} samples, max |logit diff| {worst:.2e}, loss {loss:.6f} vs alone "
          f"{alone_loss:.6f}")
    assert worst > 1e-2


def _alone_loss(model, trainer, per_sample: bool = False) -> float:
    """Token mean of -log p(target) over every sample of the training set, each run alone (TRL's nll loss); with
    ``per_sample``, the mean over samples of each sample's token mean (BLOOMZ's loss)."""
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for row in trainer.train_dataset:
            ids, lengths = torch.tensor(row["input_ids"]), row["seq_lengths"]
            labels = torch.tensor(row["labels"]) if "labels" in row else ids
            start = 0
            for n in lengths:
                x, y = ids[start:start + n], labels[start:start + n].clone()
                start += n
                logits = causal_lm(model)(input_ids=x[None]).logits[0, :-1]
                target = y[1:]
                keep = target != -100
                summed = float(F.cross_entropy(logits[keep], target[keep], reduction="sum"))
                total += summed / int(keep.sum()) if per_sample else summed
                count += 1 if per_sample else int(keep.sum())
    return total / count


def test_bloomz_loss_in_trl_is_the_mean_over_samples_alone(tiny_model, tiny_tokenizer, tmp_path):
    model = patch_bloom(tiny_model)
    _, loss, trainer = _sft_step(model, tiny_tokenizer, tmp_path, loss_type="sample_mean")
    model.eval()
    per_sample, token_mean = _alone_loss(model, trainer, per_sample=True), _alone_loss(model, trainer)
    assert abs(loss - per_sample) < 1e-5
    assert abs(per_sample - token_mean) > 1e-4  # the two losses differ on these samples: the check can fail


# ---- the pieces, fast ---------------------------------------------------------------------------------------------

def test_segments_from_positions_restart_at_zero():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 0]])
    assert segments_from_positions(positions).tolist() == [[1, 1, 1, 2, 2, 3, 4, 5]]
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    assert segments_from_positions(positions, mask).tolist() == [[1, 1, 1, 2, 2, 0, 0, 0]]
    left_padded = torch.tensor([[1, 1, 0, 1, 2]])  # generate()'s positions for a left-padded row
    assert segments_from_positions(left_padded, torch.tensor([[0, 0, 1, 1, 1]])).tolist() == [[0, 0, 2, 2, 2]]


def test_packed_segment_ids_rule():
    kwargs = {"position_ids": torch.tensor([[0, 1, 0, 1]]), "seq_idx": torch.tensor([[0, 0, 1, 1]])}
    assert packed_segment_ids(None, None, kwargs).tolist() == [[1, 1, 2, 2]]
    assert kwargs == {}  # taken out: the stock forward never sees them
    assert packed_segment_ids(None, None, {"position_ids": torch.tensor([[0, 1, 2, 3]])}) is None  # one sample
    own = torch.tensor([[1, 1, 2, 2]])
    assert packed_segment_ids(own, None, {"position_ids": torch.tensor([[0, 1, 2, 3]])}) is own
    assert packed_segment_ids(None, None, {}) is None
    left_padded = {"position_ids": torch.tensor([[1, 1, 0, 1, 2]])}  # generate() on a left-padded row: no packing
    assert packed_segment_ids(None, torch.tensor([[0, 0, 1, 1, 1]]), left_padded) is None
    with pytest.raises(BloomzTuneError, match="neither segment_ids nor position_ids"):
        packed_segment_ids(None, None, {"cu_seq_lens_q": torch.tensor([0, 2, 4])})


def test_patched_bloom_takes_trl_position_ids_and_refuses_unmarked_packing(tiny_model):
    model = patch_bloom(tiny_model).eval()
    a, b = torch.tensor([5, 6, 7, 8]), torch.tensor([9, 10, 11])
    packed = torch.cat([a, b])[None]
    with torch.no_grad():
        logits = model(input_ids=packed, position_ids=torch.tensor([[0, 1, 2, 3, 0, 1, 2]])).logits[0]
        alone = model(input_ids=b[None]).logits[0]
        mixed = model(input_ids=packed).logits[0]
    assert torch.allclose(logits[4:], alone, atol=1e-5)
    assert (mixed[4:] - alone).abs().max() > 1e-3  # the control: without position ids b sees a
    with pytest.raises(BloomzTuneError, match="neither segment_ids nor position_ids"):
        model(input_ids=packed, cu_seq_lens_q=torch.tensor([0, 4, 7], dtype=torch.int32))


def test_target_runs_and_sample_losses():
    labels = torch.tensor([[-100, 4, 5, -100, -100, 6, -100]])
    assert target_runs(labels).tolist() == [[0, 1, 1, 0, 0, 2, 0]]
    torch.manual_seed(0)
    logits = torch.randn(1, 7, 11)
    logp = torch.log_softmax(logits, -1)
    first = -(logp[0, 0, 4] + logp[0, 1, 5]) / 2
    second = -logp[0, 4, 6]
    total, items = sample_losses(logits, labels, "sample_mean")
    assert items == 2 and torch.allclose(total, first + second)
    total, items = sample_losses(logits, labels, "token_mean")
    assert items == 3 and torch.allclose(total, 2 * first + second)
    assert count_step_items([{"labels": labels}, {"labels": labels}]) == 4
    assert count_step_items([{"labels": labels}], "token_mean") == 3


def test_packed_collator_rows_are_each_sample_alone(tiny_model):
    features = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]},
                {"input_ids": [10, 11, 12, 13], "labels": [-100, -100, 12, 13]}]
    batch = PackedCollator(pad_token_id=0, max_length=8)(features)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["segment_ids"].max() == 2
    first = [batch["labels"][r, (batch["segment_ids"][r] == s).nonzero()[0]].item()
             for r in range(2) for s in (1, 2) if (batch["segment_ids"][r] == s).any()]
    assert first == [-100] * 3  # no sample's first token is predicted from another sample
    model = patch_bloom(tiny_model).eval()
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        for r in range(2):
            for s in (1, 2):
                where = (batch["segment_ids"][r] == s).nonzero().flatten()
                if where.numel():
                    alone = model(input_ids=batch["input_ids"][r, where][None]).logits[0]
                    assert torch.allclose(packed[r, where], alone, atol=1e-5)
    with pytest.raises(BloomzTuneError, match="has 9 tokens"):
        PackedCollator(pad_token_id=0, max_length=8)([{"input_ids": list(range(9))}])


def test_readme_trl_snippet_runs_as_written(tiny_model_dir, tmp_path, monkeypatch):
    """The README's "Already using TRL?" code, with only the model id pointed at the tiny BLOOM (no network)."""
    import re
    from pathlib import Path

    from bloomz_tune.model.bloom import attention_of

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Already using TRL?", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.+?)\n```", section, flags=re.S)
    assert code.count('"bigscience/bloom-560m"') == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace('"bigscience/bloom-560m"', repr(str(tiny_model_dir))), "README.md", "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.state.global_step == 1 and attention_of(namespace["model"]) == "sdpa"
    assert trainer.compute_loss_func is not None
    assert (tmp_path / "sft-bloom").is_dir()
