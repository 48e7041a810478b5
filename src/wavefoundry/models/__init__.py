"""Model families, one file each, reading like their papers: wavenet, vqvae, hifigan, wavegan,
samplernn, code_prior, vocos."""
