"""Registers the audio components; see ``docs/audio.md``.

Every factory is a lazy ``"module:attr"`` string, so nothing here imports torchaudio. Only
the log-mel front end needs it (declared with ``requires``); the views, recipes and the
dataset are pure torch and work without the ``audio`` extra.
"""

import augplug

NEEDS_TORCHAUDIO = {"requires": ("torchaudio",), "hint": "pip install '.[audio]' in an augplug checkout (torchaudio)"}


@augplug.hookimpl
def augplug_register_views(register):
    register("log_mel", "augplug_audio.frontend:LogMelSpectrogram", **NEEDS_TORCHAUDIO)
    register("waveform_crop", "augplug_audio.waveform:RandomWaveformCrop")
    register("waveform_gain", "augplug_audio.waveform:RandomGain")
    register("waveform_noise", "augplug_audio.waveform:AddNoise")
    register("waveform_shift", "augplug_audio.waveform:RandomTimeShift")
    register("time_mask", "augplug_audio.spectrogram:TimeMask")
    register("frequency_mask", "augplug_audio.spectrogram:FrequencyMask")
    register("spectrogram_noise", "augplug_audio.spectrogram:SpectrogramNoise")
    register("audio_waveform", "augplug_audio.recipes:audio_waveform")
    register("audio_spectral", "augplug_audio.recipes:audio_spectral")
    register("spectrogram_viewmaker", "augplug_audio.recipes:spectrogram_viewmaker")


@augplug.hookimpl
def augplug_register_dataset(register):
    register("audio-patterns", "augplug_audio.dataset:audio_patterns")
