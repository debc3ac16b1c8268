import torch


def test_tiny_round_trip(tiny_model_dir, tiny_tokenizer, tiny_model):
    """The saved tiny BLOOM loads through from_pretrained and runs; the tokenizer encodes any script."""
    assert (tiny_model_dir / "model.safetensors").exists()
    assert tiny_tokenizer.eos_token == "</s>" and tiny_tokenizer.pad_token_id == 3
    ids = tiny_tokenizer("这部电影 great ✓", add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.unk_token_id not in ids
    assert tiny_tokenizer.decode(ids) == "这部电影 great ✓"
    out = tiny_model(torch.tensor([ids]))
    assert out.logits.shape == (1, len(ids), len(tiny_tokenizer))
