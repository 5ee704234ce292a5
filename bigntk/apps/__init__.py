"""Applications built on bigntk: image inpainting (apps.inpaint), CMap completion (apps.cmap)."""
