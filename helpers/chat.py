"""Talking to a model after training: replies streamed token by token through the model's chat template, the
same message to several models side by side, and a text box for Jupyter and Colab.
"""
from __future__ import annotations

import torch
from transformers import TextStreamer

from helpers.env import batch_run


@torch.no_grad()
def chat(model, tokenizer, message: str, history: list[dict] | None = None, max_new_tokens: int = 96,
         stream: bool | None = None) -> str:
    """The model's greedy reply to `message` (after `history`, a list of chat messages); returns it.

    stream: print the reply token by token as it is generated. By default yes in Jupyter and Colab; in
    batch runs (papermill) the reply is printed once, whole, so that the stored notebook reads as text.
    """
    if stream is None:
        stream = not batch_run()
    messages = (history or []) + [{"role": "user", "content": message}]
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True).to(next(model.parameters()).device)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    reply = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    if not stream:
        print(reply)
    return reply


def compare(models: dict, tokenizer, message: str, max_new_tokens: int = 96) -> dict[str, str]:
    """The same message to each model ({name: model}); each reply streamed under its name."""
    replies = {}
    for name, model in models.items():
        print(f"--- {name}:")
        replies[name] = chat(model, tokenizer, message, max_new_tokens=max_new_tokens)
    return replies


def chat_box(models: dict, tokenizer, max_new_tokens: int = 96):
    """A text box (ipywidgets): type a message, press Enter, and read every model's reply. Needs a live kernel."""
    import ipywidgets as widgets
    from IPython.display import display

    box = widgets.Text(placeholder="Ask something and press Enter", layout=widgets.Layout(width="80%"))
    output = widgets.Output()

    def send(_):
        with output:
            output.clear_output()
            print(f">>> {box.value}")
            compare(models, tokenizer, box.value, max_new_tokens)

    box.on_submit(send)
    display(box, output)
