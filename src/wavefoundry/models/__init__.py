"""The papers, one file each, reading like them: wavenet, vqvae, hifigan, wavegan, samplernn,
code_prior, waveglow, vae."""
