"""The real-time camera and video pipeline behind ``detector detect``.

    options.py   DetectOptions: the source text, capture options, outputs, when to stop
    sources.py   one source grammar: camera index, /dev/videoN, csi://N, rtsp://, http(s)://,
                 gst:PIPELINE, video files, images, directories and globs
    outputs.py   one output grammar, the twin: out.mp4, DIR/, out.jpg, dets.jsonl, jsonl:PATH,
                 - (stdout), display://N, http://HOST:PORT (``parse_sink``, ``open_sink``)
    source_list.py  several sources: the list file (one SOURCE a line), each source's name
    sinks.py     the sinks: video file, image folder, image file, JSON Lines, MOT, window
    mjpeg.py     the MJPEG-over-HTTP server sink
    channel.py   bounded FIFO / newest-only mailbox between threads
    frame.py     one frame on its way through the pipeline
    lane.py      one source's capture thread (reconnects), its sinks, tracker and statistics
    pipeline.py  threaded capture -> inference -> output with bounded queues; several sources
                 through one network, a batch of their frames per call
    overlay.py   boxes, class names, scores, track ids and trails, FPS and latency
    stats.py     frame counts, per-stage latency percentiles, throughput, batches, tracks
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

Several sources through one network, tracked, one video per source::

    from detector.stream.pipeline import Feed
    from detector.track import Tracker

    det = detector.load("best.safetensors", max_batch=3, conf=0.1)   # batches of 3 frames
    feeds = []
    for i, uri in enumerate(("rtsp://cam1/s", "rtsp://cam2/s", "csi://0")):
        src = open_source(uri)
        feeds.append(Feed(src, [open_sink(f"out-{i}.mp4", src)], f"cam{i}", Tracker()))
    stats = Pipeline(det, feeds=feeds).run()          # stats of the run; per source: lanes

    run_detect(det, DetectOptions(("a.mp4", "b.mp4"), track=True,
                                  output=OutputOptions(json="all.jsonl", save="out-{name}.mp4")))
"""
