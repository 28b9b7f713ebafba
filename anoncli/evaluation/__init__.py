"""`anoncli evaluate`: per-face privacy and usefulness figures for images, and for video."""
