"""The papers, one file each, reading like them: wavenet, vqvae, hifigan, wavegan, samplernn,
code_prior, tacotron2, waveglow, vae, vocos; layers.py for shared blocks."""
