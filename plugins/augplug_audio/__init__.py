"""augplug built-in plugin: audio views (waveform and spectrogram), a log-mel front end, the
expert audio recipes, a spectrogram viewmaker and the synthetic ``audio-patterns`` dataset."""
