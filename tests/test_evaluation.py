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
