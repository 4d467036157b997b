"""Training: named recipes (:mod:`~tenku.train.presets`), one loop with EMA, checkpoints and
resume (:mod:`~tenku.train.loop`), and the VAE and transformer trainers."""
