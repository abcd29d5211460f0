"""Digit Studio: draw a digit, see two models classify it, train them live.

`python app.py` serves the Gradio UI at / and the REST API beside it
(on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT, default 127.0.0.1:7860).
"""
from __future__ import annotations

import os

import gradio as gr

with gr.Blocks(title="Digit Studio") as demo:
    gr.Markdown("# Digit Studio")

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
