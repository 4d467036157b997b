"""Neural networks: the video VAE, the diffusion transformer, the text encoder, shared layers."""
