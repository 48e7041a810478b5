"""The papers, one file each, reading like them: wavenet, vqvae, hifigan, wavegan, waveglow, vae."""
