"""The pipelines that stream images and video frames through detect → (track) → anonymize → paste."""
