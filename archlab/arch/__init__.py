"""Architecture: the description, its blocks, the builder, presets, diffusers import."""
