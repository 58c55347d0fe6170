r"""age-tf-serve: answer ages over HTTP (TF Serving's REST API, /v1/analyze, a page to try it).

Examples:
  age-tf-serve --model=runs/demo/runs/mobilenet_v2_full      # then open http://127.0.0.1:8501/
  curl -F image=@photo.jpg http://127.0.0.1:8501/v1/analyze
  curl -d '{"instances": [{"b64": "'$(base64 -w0 face.jpg)'"}]}' \
      http://127.0.0.1:8501/v1/models/age:predict
Needs the serve extra: pip install -e '.[serve]'.
"""

from age_tf.cli import common
from age_tf.serve.serve_config import ServeConfig

COMMAND = common.Command(__name__, ServeConfig, required=("model",))


def main(cfg, args):
    try:
        import aiohttp  # noqa: F401  (the optional extra)
    except ImportError:
        raise ValueError("age-tf-serve needs aiohttp: pip install -e '.[serve]'") from None
    from age_tf.serve import server  # TensorFlow: loaded for the work, not for --help

    server.serve(cfg)
    return ""


run = COMMAND.entry_point(main)
