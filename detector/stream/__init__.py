"""The real-time camera and video pipeline behind ``detector detect``.

    options.py   DetectOptions: the source text, capture options, outputs, when to stop
    sources.py   one source grammar: camera index, /dev/videoN, csi://N, rtsp://, http(s)://,
                 gst:PIPELINE, video files, images, directories and globs
    outputs.py   one output grammar, the twin: out.mp4, DIR/, out.jpg, dets.jsonl, jsonl:PATH,
                 - (stdout), display://N, http://HOST:PORT (``parse_sink``, ``open_sink``)
    sinks.py     the sinks: video file, image folder, image file, JSON Lines, window
    mjpeg.py     the MJPEG-over-HTTP server sink
    pipeline.py  threaded capture -> inference -> output with bounded queues
    overlay.py   boxes, class names, scores, FPS and latency
    stats.py     frame counts, per-stage latency percentiles, throughput
    run.py       a whole run as ``detector detect`` does it (``DetectRun``)

From Python::

    import detector
    from detector.stream.outputs import open_sink
    from detector.stream.pipeline import Pipeline
    from detector.stream.sources import open_source

    det = detector.load("best.safetensors")
    src = open_source("csi://0")                       # fails at once if it cannot open
    sinks = [open_sink(uri, src) for uri in ("out.mp4", "dets.jsonl", "http://0.0.0.0:8080")]
    stats = Pipeline(det, src, sinks, max_frames=300).run()
    print(stats.summary())

or the whole run, with its console output and signal handling::

    from detector.stream.options import DetectOptions, OutputOptions
    from detector.stream.run import run_detect

    run_detect(det, DetectOptions("clip.mp4", output=OutputOptions(outputs=("out.mp4",))))
"""
