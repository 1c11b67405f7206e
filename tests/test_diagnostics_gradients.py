import pytest
import torch

from gcpo.gradients import CountSketch, completion_gradients, frozen_except, select_parameters


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).float()


@pytest.fixture(scope="module")
def model():
    return _tiny_llama()


def _sequences():
    gen = torch.Generator().manual_seed(2)
    lens = [(3, 5), (4, 2), (2, 6), (3, 0)]  # (prompt, completion); the last is empty
    return [torch.randint(0, 50, (p + c,), generator=gen) for p, c in lens], [p for p, _ in lens]


def test_select_parameters(model):
    last = select_parameters(model, "last-block")
    assert last and all(n.startswith("model.layers.2.") for n, _ in last)
    head = select_parameters(model, "lm_head")
    assert len(head) == 1 and head[0][1] is model.get_output_embeddings().weight
    assert len(select_parameters(model, "all")) == len(list(model.parameters()))
    assert [n for n, _ in select_parameters(model, r"layers\.1\.mlp")] == [
        n for n, _ in model.named_parameters() if n.startswith("model.layers.1.mlp")
    ]
    with pytest.raises(ValueError, match="matches no parameter"):
        select_parameters(model, "no_such_layer")


def test_frozen_except_restores_flags(model):
    params = [p for _, p in select_parameters(model, "last-block")]
    with frozen_except(model, params):
        assert sum(p.requires_grad for p in model.parameters()) == len(params)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("objective", ["mean", "sum"])
def test_sum_of_per_sample_gradients_equals_gradient_of_sum(model, objective):
    """sum_i g_i must equal grad of sum_i A_i l_i computed in ONE padded batch forward, with
    l_i the mean (objective 'mean') or the sum ('sum') of the completion-token log-probs."""
    seqs, plens = _sequences()
    coeffs = torch.tensor([0.7, -1.3, 0.6, 2.0])
    named = select_parameters(model, "last-block")
    params = [p for _, p in named]
    out = completion_gradients(
        model, params, seqs, plens, coeffs, temperature=0.8, objective=objective
    )

    # reference: right-padded batch, mask the completion tokens, autograd of the summed objective
    t = max(s.numel() for s in seqs)
    ids = torch.zeros(len(seqs), t, dtype=torch.long)
    attn = torch.zeros(len(seqs), t, dtype=torch.long)
    comp = torch.zeros(len(seqs), t - 1)
    for i, (s, p) in enumerate(zip(seqs, plens, strict=True)):
        ids[i, : s.numel()] = s
        attn[i, : s.numel()] = 1
        comp[i, p - 1 : s.numel() - 1] = 1
    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1] / 0.8
    tok = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
    loglik = (tok * comp).sum(1) / comp.sum(1).clamp_min(1)
    objective_value = (tok * comp).sum(1) if objective == "sum" else loglik
    (coeffs * objective_value).sum().backward()
    expected = torch.cat([p.grad.reshape(-1) for p in params])
    torch.testing.assert_close(out.grads.sum(0), expected, rtol=1e-4, atol=1e-6)
    # mean_logprob is the per-token mean whatever the objective
    torch.testing.assert_close(out.mean_logprob, loglik.detach(), rtol=1e-4, atol=1e-6)
    model.zero_grad()
    assert out.grads[3].abs().sum() == 0  # empty completion
    assert out.num_tokens.tolist() == [5, 2, 6, 0]
    assert (out.mean_entropy[:3] > 0).all() and out.mean_entropy[3] == 0


def test_zero_coefficient_gives_zero_gradient_and_projection_matches(model):
    seqs, plens = _sequences()
    params = [p for _, p in select_parameters(model, "last-block")]
    coeffs = torch.tensor([1.0, 0.0, -1.0, 0.0])
    exact = completion_gradients(model, params, seqs, plens, coeffs)
    assert exact.grads[1].abs().sum() == 0
    sk = CountSketch([p.numel() for p in params], dim=64, seed=0)
    proj = completion_gradients(model, params, seqs, plens, coeffs, sketch=sk)
    assert proj.grads.shape == (4, 64)
    torch.testing.assert_close(proj.grads, sk.project(exact.grads), rtol=1e-4, atol=1e-6)


def test_completion_gradients_rejects_bad_input(model):
    seqs, plens = _sequences()
    params = [p for _, p in select_parameters(model, "lm_head")]
    with pytest.raises(ValueError, match="same length"):
        completion_gradients(model, params, seqs, plens, [1.0, 2.0])
    with pytest.raises(ValueError, match="prompt_lengths"):
        completion_gradients(model, params, seqs, [0, 1, 1, 1], [1.0] * 4)
    with pytest.raises(ValueError, match="objective"):
        completion_gradients(model, params, seqs, plens, [1.0] * 4, objective="max")


def test_sum_objective_scales_each_gradient_by_its_length(model):
    """grad of the summed log-prob = n_i x grad of the mean, completion by completion."""
    seqs, plens = _sequences()
    params = [p for _, p in select_parameters(model, "lm_head")]
    coeffs = torch.tensor([1.0, -0.5, 0.25, 1.0])
    mean = completion_gradients(model, params, seqs, plens, coeffs, objective="mean")
    total = completion_gradients(model, params, seqs, plens, coeffs, objective="sum")
    n = mean.num_tokens.float()[:, None]
    torch.testing.assert_close(total.grads, mean.grads * n, rtol=1e-4, atol=1e-7)
