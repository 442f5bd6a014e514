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
* ``write_text_metadata``: ``model``, ``out``, ``labels``, ``vocab`` (a ``vocab.txt``) and
  ``ids_name``, ``mask_name``, ``segment_name`` (the file's input tensor names): the file with
  BERT text-classifier metadata (WordPiece tokenizer, vocabulary packed in) written by
  ``metadata_writers.text_classifier.MetadataWriter.create_for_bert_model``, and ``refused``:
  None when Tasks' ``TextClassifier`` then loads the file and classifies a trial text, else
  MediaPipe's error (e.g. an op its TFLite runtime lacks).
* ``classify_text``: ``model``, ``texts`` (a JSON file holding a list of strings) and ``scores``
  (an ``.npz`` to write): every category's score from Tasks' ``TextClassifier``, as ``classify``.

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
        scores, names = _scores((classifier.classify(mp.Image(
            image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            for image in images), len(images))
    done = time.perf_counter()
    np.savez(request["scores"], scores=scores)
    return {"n": int(len(images)), "category_names": names,
            "load_seconds": loaded - start, "classify_seconds": done - loaded}


def _write_text_metadata(request):
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer
    from mediapipe.tasks.python.metadata.metadata_writers import text_classifier

    with open(request["model"], "rb") as f:
        model = bytearray(f.read())
    writer = text_classifier.MetadataWriter.create_for_bert_model(
        model, tokenizer=metadata_writer.BertTokenizer(request["vocab"]),
        labels=metadata_writer.Labels().add(list(request["labels"])),
        ids_name=request["ids_name"], mask_name=request["mask_name"],
        segment_name=request["segment_name"])
    data, metadata_json = writer.populate()
    with open(request["out"], "wb") as f:
        f.write(bytes(data))
    return {"metadata": json.loads(metadata_json), "refused": _text_trial(request["out"])}


def _text_options(model):
    from mediapipe.tasks import python as tasks
    from mediapipe.tasks.python import text

    return text.TextClassifierOptions(base_options=tasks.BaseOptions(model_asset_path=model),
                                      max_results=-1, score_threshold=-3.0e38)


def _text_trial(model):
    """None when Tasks' ``TextClassifier`` loads ``model`` and classifies one text; else why
    not: the TFLite runtime's ``ERROR:`` lines (written to file descriptor 2, captured here),
    or, without any, the exception's last line."""
    import os
    import tempfile

    from mediapipe.tasks.python import text

    error = None
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            classifier = text.TextClassifier.create_from_options(_text_options(model))
            try:
                classifier.classify("a trial text, 1.")
            finally:
                classifier.close()
        except (RuntimeError, ValueError) as e:
            error = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    if error is None:
        return None
    runtime = [line[len("ERROR:"):].strip().rstrip(".") for line in lines
               if line.startswith("ERROR:")]
    return "; ".join(runtime) if runtime else error


def _scores(results, n):
    """``([n, classes] scores in category index order, category names)`` of classifications."""
    import numpy as np

    scores, names = None, {}
    for i, result in enumerate(results):
        categories = result.classifications[0].categories
        if scores is None:
            scores = np.full((n, len(categories)), np.nan, np.float32)
        for c in categories:
            scores[i, c.index] = c.score
            names.setdefault(c.index, c.category_name)
    return scores, [names[i] for i in sorted(names)]


def _classify_text(request):
    import numpy as np
    from mediapipe.tasks.python import text

    with open(request["texts"], encoding="utf-8") as f:
        texts = json.load(f)
    start = time.perf_counter()
    with text.TextClassifier.create_from_options(_text_options(request["model"])) as classifier:
        loaded = time.perf_counter()
        scores, names = _scores((classifier.classify(t) for t in texts), len(texts))
    done = time.perf_counter()
    np.savez(request["scores"], scores=scores)
    return {"n": len(texts), "category_names": names,
            "load_seconds": loaded - start, "classify_seconds": done - loaded}


COMMANDS = {"probe": _probe, "write_metadata": _write_metadata,
            "read_metadata": _read_metadata, "classify": _classify,
            "write_text_metadata": _write_text_metadata, "classify_text": _classify_text}


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
