"""f2n for ComfyUI: copy or link this folder into ComfyUI/custom_nodes/ (README.md here).
ComfyUI imports this file as a package and reads the two mappings."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
