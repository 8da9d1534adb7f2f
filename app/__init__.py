"""f2n where photo restorers work: ``f2n-app`` (a local web page, :mod:`f2n.app.ui`) and the
parts the ComfyUI node pack (``comfyui/``) shares with it. Only :mod:`f2n.app.ui` and
:mod:`f2n.app.cli` import gradio (the ``app`` extra); the rest needs f2n alone."""
