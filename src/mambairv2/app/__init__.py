"""A local web page for MambaIRv2 (``mambairv2 app``, the ``[app]`` extra: Gradio).

- :mod:`.models`: the models offered (bundled, ``--weights-dir``, uploaded), loaded safely.
- :mod:`.jobs`: upload limits, restoring and scoring one image; no Gradio.
- :mod:`.page`: the Gradio page and its launch (Gradio imported there only).
"""
