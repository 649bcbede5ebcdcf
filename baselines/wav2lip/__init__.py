"""Wav2Lip (Prajwal et al., ACM MM 2020) re-implemented in-process so that the official checkpoints load."""
