"""The real-time camera and video pipeline behind ``detector detect``.

    sources.py   one source grammar: camera index, /dev/videoN, csi://N, rtsp://, http(s)://,
                 gst:PIPELINE, video files, images, directories and globs
    pipeline.py  threaded capture -> inference -> output with bounded queues
    sinks.py     window, video file, image folder, JSON Lines, MJPEG over HTTP
    overlay.py   boxes, class names, scores, FPS and latency
    stats.py     frame counts, per-stage latency percentiles, throughput
    run.py       the CLI glue (``run_detect``)

From Python::

    import detector
    from detector.stream.pipeline import Pipeline
    from detector.stream.sinks import JsonLinesSink, VideoFileSink
    from detector.stream.sources import open_source

    det = detector.load("best.safetensors")
    src = open_source("csi://0")                       # fails at once if it cannot open
    stats = Pipeline(det, src, [VideoFileSink("out.mp4", src.fps),
                                JsonLinesSink("dets.jsonl")], max_frames=300).run()
    print(stats.summary())
"""
