"""A local web page for MambaIRv2 (``mambairv2 app``, the ``[app]`` extra: Gradio).

- :mod:`.models`: the models offered (bundled, ``--weights-dir``, uploaded), loaded safely.
- :mod:`.jobs`: upload limits, restoring and scoring one image; no Gradio.
- :mod:`.page`: the Gradio page, mounted as an ASGI app (Gradio imported there only).
- :mod:`.server`: the settings, the port (answering with a starting page at once) and the server
  of the finished page; standard library and uvicorn only.
"""
