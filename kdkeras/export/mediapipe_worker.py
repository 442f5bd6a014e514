"""The worker kdkeras runs *inside the MediaPipe environment* (never imported by kdkeras).

MediaPipe 0.10.21 cannot share an environment with TF-MOT (``absl-py`` pins), so kdkeras runs
this script with the second environment's Python (:mod:`kdkeras.export.mediapipe_env`):

    <mediapipe python> -I mediapipe_worker.py REQUEST.json RESULT.json

It imports only the standard library, numpy and mediapipe. A request is a JSON object with a
``command``:

* ``probe``: the versions of mediapipe, numpy and Python.
* ``write_metadata``: ``model`` (input file), ``out`` (output file), ``labels`` (class names),
  ``mean`` and ``std`` (one value per input channel): the file with image-classifier metadata
  written by MediaPipe's own ``metadata_writers.image_classifier.MetadataWriter``.
* ``read_metadata``: ``model``: the metadata JSON and the associated files MediaPipe reads.
* ``classify``: ``model`` and ``images`` (an ``.npz`` with ``images``: uint8 ``[N, H, W, 3]``),
  ``scores`` (an ``.npz`` to write): every category's score from Tasks' ``ImageClassifier``,
  ``[N, classes]`` in category index order, and the names MediaPipe gives the categories.

The result JSON is ``{"ok": true, ...}``; an error exits with status 1 after printing the
traceback on stderr, which kdkeras shows.
"""

import json
import platform
import sys
import time


def _probe(request):
    import mediapipe
    import numpy

    from mediapipe.tasks.python.metadata.metadata_writers import image_classifier  # noqa: F401
    from mediapipe.tasks.python.vision import image_classifier as _task  # noqa: F401

    return {"mediapipe": mediapipe.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def _write_metadata(request):
    from mediapipe.tasks.python.metadata.metadata_writers import image_classifier
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    with open(request["model"], "rb") as f:
        model = bytearray(f.read())
    labels = metadata_writer.Labels().add(list(request["labels"]))
    writer = image_classifier.MetadataWriter.create(
        model, input_norm_mean=[float(v) for v in request["mean"]],
        input_norm_std=[float(v) for v in request["std"]], labels=labels)
    data, metadata_json = writer.populate()
    with open(request["out"], "wb") as f:
        f.write(bytes(data))
    return {"metadata": json.loads(metadata_json)}


def _read_metadata(request):
    from mediapipe.tasks.python.metadata import metadata

    shown = metadata.MetadataDisplayer.with_model_file(request["model"])
    files = shown.get_packed_associated_file_list()
    return {"metadata": json.loads(shown.get_metadata_json()),
            "associated_files": {name: shown.get_associated_file_buffer(name).decode("utf-8")
                                 for name in files}}


def _classify(request):
    import mediapipe as mp
    import numpy as np
    from mediapipe.tasks import python as tasks
    from mediapipe.tasks.python import vision

    images = np.load(request["images"])["images"]
    options = vision.ImageClassifierOptions(
        base_options=tasks.BaseOptions(model_asset_path=request["model"]),
        max_results=-1, score_threshold=-3.0e38)
    start = time.perf_counter()
    with vision.ImageClassifier.create_from_options(options) as classifier:
        loaded = time.perf_counter()
        scores, names = None, {}
        for i, image in enumerate(images):
            result = classifier.classify(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            categories = result.classifications[0].categories
            if scores is None:
                scores = np.full((len(images), len(categories)), np.nan, np.float32)
            for c in categories:
                scores[i, c.index] = c.score
                names.setdefault(c.index, c.category_name)
    done = time.perf_counter()
    np.savez(request["scores"], scores=scores)
    return {"n": int(len(images)), "category_names": [names[i] for i in sorted(names)],
            "load_seconds": loaded - start, "classify_seconds": done - loaded}


COMMANDS = {"probe": _probe, "write_metadata": _write_metadata,
            "read_metadata": _read_metadata, "classify": _classify}


def main(argv):
    if len(argv) != 3:
        sys.exit(f"usage: {argv[0]} REQUEST.json RESULT.json")
    with open(argv[1], encoding="utf-8") as f:
        request = json.load(f)
    command = request.get("command")
    if command not in COMMANDS:
        sys.exit(f"unknown command {command!r}; known: {sorted(COMMANDS)}")
    result = dict(COMMANDS[command](request), ok=True)
    with open(argv[2], "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv)
