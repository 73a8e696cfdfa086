"""The GO-EA paper's analyses (Kucharavy, Guerraoui & Dolamic, ALIFE 2023) on any
``mnist-weights`` network and any weights: cap probability, update angles, the random-update
sweep, flatness profiles and class-occlusion transfer. ``evoreg analyze`` runs them on a
finished run's recommendation.
"""
