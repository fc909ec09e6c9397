"""Evaluation of trained generators: FID / KID, mIoU / accuracy, LPIPS diversity, sample pages.

Depends on models/, data/ and inference; never on training/ (see the README's import rules).
"""
