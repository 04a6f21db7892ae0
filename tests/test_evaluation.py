"""helpers.evaluation's reply measures on a tiny random model: whether a reply stopped (ended with the
end-of-turn token within the limit) is read from the generated tokens."""
import pytest

from helpers.evaluation import generate_replies
from helpers.world import chat

ROWS = [chat(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a in range(3) for b in range(3)]


@pytest.fixture(scope="module")
def model_and_tokenizer(make_tokenizer, make_llama):
    tok = make_tokenizer([m["content"] for r in ROWS for m in r["messages"]] * 3, 300)
    return make_llama(tok), tok


def test_stop_rate_reads_the_end_of_turn_token(model_and_tokenizer):
    model, tok = model_and_tokenizer
    never = generate_replies(model, tok, ROWS, max_new_tokens=4, suppress_tokens=[tok.eos_token_id])
    assert never.stopped == [False] * len(ROWS) and never.stop_rate == 0.0
    # eos forced at the last allowed token: every reply stops there, its text unchanged before it
    forced = generate_replies(model, tok, ROWS, max_new_tokens=4, forced_eos_token_id=tok.eos_token_id)
    assert forced.stopped == [True] * len(ROWS) and forced.stop_rate == 1.0


def test_assistant_mask_tokenises_a_conversation_once_and_follows_the_template(make_tokenizer):
    """The cache returns what a fresh tokenisation returns, and a changed chat template is tokenised again."""
    from helpers import evaluation

    tok = make_tokenizer([m["content"] for r in ROWS for m in r["messages"]] * 3, 300)
    messages, real_template = ROWS[0]["messages"], tok.chat_template
    fresh = evaluation._assistant_mask(tok, messages, "row")
    first = evaluation.assistant_mask(tok, messages)
    calls = []
    real = evaluation.chat_ids
    evaluation.chat_ids = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        again = evaluation.assistant_mask(tok, messages)
        assert first == again == fresh and not calls, "the second call tokenised the conversation again"
        again[0].append(-1)                                   # a caller's change reaches no later call
        assert evaluation.assistant_mask(tok, messages) == fresh
        tok.chat_template = tok.chat_template.replace("'<|assistant|>\n'", "'<|assistant|>\n\n'")
        assert tok.chat_template != real_template
        changed = evaluation.assistant_mask(tok, messages)
        assert calls, "a changed chat template was read from the cache"
        assert changed == evaluation._assistant_mask(tok, messages, "row")
    finally:
        evaluation.chat_ids = real
