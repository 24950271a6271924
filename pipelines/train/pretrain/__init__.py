"""Pretraining the tiny image and text towers CLIP-style on a caption corpus (Ray Train)."""
