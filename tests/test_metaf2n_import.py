"""f2n-models import metaf2n: checkpoints written by TensorFlow in the official MetaF2N
layout (random values, optimizer slots, discriminator and global step included) come out
as f2n checkpoints bit for bit; bad checkpoints are one line, exit 3, no file; and one f2n
adaptation step on the imported network equals the official test.py step computed by
TensorFlow itself.

The layout the checkpoints here are written in is checked against the names and shapes of
a checkpoint made by the official code (tests/data/metaf2n_official_variables.json, see
its ``made_by``); the tiny checkpoints (1-2 blocks, 8 features) keep the tests fast."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import AOTI_BLOCKS, seed_engine_cache

from f2n.errors import WeightsError
from f2n.runtime.adapt import AdaptConfig, adapt
from f2n.runtime.build import checkpoint_masknet, resolve_settings
from f2n.runtime.face.stage import patch_weights
from f2n.runtime.types import PatchBatch
from f2n.weights import cli as models_cli
from f2n.weights.checkpoint import read_weight_file
from f2n.weights.metaf2n_import import INSTALL_HINT, import_tensorflow, plan_import
from f2n.weights.sr import load_sr_network

try:
    tf = import_tensorflow()  # the importer's own way: triton first, TensorFlow after
except WeightsError:
    pytest.skip(INSTALL_HINT, allow_module_level=True)

OFFICIAL_VARIABLES = Path(__file__).parent / "data" / "metaf2n_official_variables.json"
# 2 blocks (a block index other than 0 is mapped), conftest's AOTI_BLOCKS: --engine aoti shares its package
TINY = {"num_block": AOTI_BLOCKS, "num_feat": 8, "num_grow_ch": 4, "mask_feat": 8}
STEP = 1234


def official_shapes(num_block: int, num_feat: int, num_grow_ch: int, mask_feat: int) -> dict[str, list[int]]:
    """The trainable variables of the official MODEL and Mask scopes (HWIO kernels)."""
    def conv(name: str, cin: int, cout: int, kernel: str = "weight") -> dict[str, list[int]]:
        return {f"{name}/{kernel}": [3, 3, cin, cout], f"{name}/bias": [cout]}

    shapes = conv("MODEL/conv_first", 3, num_feat)
    for i in range(num_block):
        for j in range(1, 4):
            for k in range(1, 6):
                out = num_feat if k == 5 else num_grow_ch
                shapes |= conv(f"MODEL/body/{i}/rdb{j}/conv{k}", num_feat + (k - 1) * num_grow_ch, out)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes |= conv(f"MODEL/{name}", num_feat, num_feat)
    shapes |= conv("MODEL/conv_last", num_feat, 3)
    for k in range(1, 9):
        shapes |= conv(f"Mask/conv{k}", 6 if k == 1 else mask_feat, 1 if k == 8 else mask_feat, "kernel")
    return shapes


def random_values(shapes: dict[str, list[int]], seed: int) -> dict[str, np.ndarray]:
    """He-scaled kernels; MaskNet's last bias positive, so its ReLU output is not all zero."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        scale = (2.0 / np.prod(shape[:3])) ** 0.5 if len(shape) == 4 else 0.05
        values[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    values["Mask/conv8/bias"] = np.full([1], 0.5, np.float32)
    return values


def write_tf1_checkpoint(folder: Path, values: dict[str, np.ndarray], *, step: int = STEP,
                         extra: dict[str, np.ndarray] | None = None, optimizers: bool = True) -> Path:
    """Save ``values`` as train.py does: each scope entered once (MODEL and the
    discriminator through tf.Variable, Mask through get_variable), stop_grad,
    global_step, one Adam over MODEL|Mask and one over the discriminator (their slots and
    beta powers; ``optimizers`` False leaves them out, which is faster), tf.compat.v1
    Saver with the step in the name."""
    graph = tf.Graph()
    with graph.as_default():
        scoped: dict[str, dict[str, np.ndarray]] = {}
        for name, value in {**values, "Discriminator/conv0/weight": np.ones([3, 3, 3, 4], np.float32),
                            **(extra or {})}.items():
            scope, _, rest = name.partition("/")
            scoped.setdefault(scope, {})[rest] = value
        trainable: dict[str, list] = {}
        for scope, variables in scoped.items():
            with tf.compat.v1.variable_scope(scope):
                trainable[scope] = [
                    tf.compat.v1.get_variable(rest, initializer=tf.constant(value)) if scope == "Mask"
                    else tf.compat.v1.Variable(value, name=rest) for rest, value in variables.items()]
        tf.compat.v1.Variable(True, name="stop_grad", trainable=False)
        tf.compat.v1.Variable(step, name="global_step", trainable=False)
        generator = [v for scope in ("MODEL", "Mask") for v in trainable.get(scope, [])]
        for group in (generator, trainable["Discriminator"]) if optimizers else ():
            loss = tf.add_n([tf.reduce_sum(tf.square(v)) for v in group])
            tf.compat.v1.train.AdamOptimizer(1e-4).minimize(loss, var_list=group)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return Path(saver.save(session, str(folder / "model"), global_step=step))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    values = random_values(official_shapes(**TINY), seed=0)
    return write_tf1_checkpoint(tmp_path_factory.mktemp("official"), values), values


@pytest.fixture(scope="module")
def imported(source: tuple[Path, dict[str, np.ndarray]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = import_command(source[0], tmp_path_factory.mktemp("imported") / "metaf2n.safetensors")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def import_command(checkpoint: Path, out: Path):
    return CliRunner().invoke(models_cli.main, ["import", "metaf2n", str(checkpoint), "--out", str(out)])


def to_hwio(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(2, 3, 1, 0).numpy() if tensor.ndim == 4 else tensor.numpy()


def test_the_checkpoints_here_have_the_official_layout() -> None:
    official = json.loads(OFFICIAL_VARIABLES.read_text())["variables"]
    trainable = {name: shape for name, (shape, _) in official.items() if name.startswith(("MODEL/", "Mask/"))
                 and not name.endswith(("/Adam", "/Adam_1"))}
    assert trainable == official_shapes(num_block=23, num_feat=64, num_grow_ch=32, mask_feat=64)


def test_the_official_layout_maps_onto_x4plus_and_masknet() -> None:
    official = json.loads(OFFICIAL_VARIABLES.read_text())["variables"]
    plan = plan_import({k: v[0] for k, v in official.items()}, {k: v[1] for k, v in official.items()}, "official")
    assert len(plan.sr) == 702 and len(plan.masknet) == 16  # every x4plus parameter, 8 MaskNet convs
    assert plan.sr["body.22.rdb3.conv5.weight"] == "MODEL/body/22/rdb3/conv5/weight"
    assert plan.masknet["body.14.bias"] == "Mask/conv8/bias"


def test_every_tensor_equals_its_source_bit_for_bit(source: tuple[Path, dict[str, np.ndarray]], imported: Path) -> None:
    prefix, values = source
    weights = read_weight_file(imported)
    tensors = weights.tensors
    assert len(tensors) == len(values)
    for name, value in values.items():
        scope, _, rest = name.partition("/")
        if scope == "MODEL":
            key = "sr." + rest.replace("/", ".")
        else:
            index, kind = rest.removeprefix("conv").split("/")
            key = f"masknet.body.{2 * (int(index) - 1)}.{'weight' if kind == 'kernel' else 'bias'}"
        assert tensors[key].dtype == torch.float32
        np.testing.assert_array_equal(to_hwio(tensors[key]), value, err_msg=name)  # exact

    meta = json.loads(weights.metadata["f2n_meta"])
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    assert meta["source_sha256"] == {data.name: hashlib.sha256(data.read_bytes()).hexdigest()}
    assert meta["source_step"] == STEP and meta["source"] == str(prefix.resolve())
    loaded = load_sr_network(imported)
    assert loaded.descriptor.num_block == TINY["num_block"] and loaded.descriptor.num_feat == TINY["num_feat"]
    defaults = loaded.adaptation_defaults
    assert (defaults.optimizer, defaults.alpha, defaults.steps) == ("sgd", 1e-2, 1)  # test.py's step
    assert loaded.patch_defaults.per_face == 16 and loaded.patch_defaults.lq_size == 16
    assert loaded.masknet_lq_resize == "tf1-bicubic"


def test_kernel_layout_change_matches_tensorflow_conv2d(source: tuple[Path, dict[str, np.ndarray]],
                                                        imported: Path) -> None:
    """Independent of f2n's code: TF's own conv on the HWIO kernel against PyTorch's conv
    on the imported OIHW weight."""
    _, values = source
    tensors = read_weight_file(imported).tensors
    x = np.random.default_rng(1).random((2, 11, 13, 16), dtype=np.float32)
    for tf_name, key, channels in [("MODEL/body/1/rdb2/conv3/weight", "sr.body.1.rdb2.conv3", 16),
                                   ("Mask/conv1/kernel", "masknet.body.0", 6)]:
        expected = tf.nn.bias_add(tf.nn.conv2d(x[..., :channels], values[tf_name], 1, "SAME"),
                                  values[tf_name.rsplit("/", 1)[0] + "/bias"]).numpy()
        got = torch.nn.functional.conv2d(torch.from_numpy(x[..., :channels]).permute(0, 3, 1, 2),
                                         tensors[key + ".weight"], tensors[key + ".bias"], padding=1)
        np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), expected, atol=1e-5, rtol=0)


def test_a_folder_imports_its_newest_checkpoint(tmp_path: Path) -> None:
    values = random_values(official_shapes(num_block=1, num_feat=8, num_grow_ch=4, mask_feat=8), seed=3)
    write_tf1_checkpoint(tmp_path, values, step=99000, optimizers=False)
    write_tf1_checkpoint(tmp_path, values, step=100000, optimizers=False)  # 'model-100000' sorts before 'model-99000' as text
    result = import_command(tmp_path, tmp_path / "out.safetensors")
    assert result.exit_code == 0, result.output
    meta = json.loads(read_weight_file(tmp_path / "out.safetensors").metadata["f2n_meta"])
    assert meta["source_step"] == 100000 and meta["source"].endswith("model-100000")


def _drop(values: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    return {key: value for key, value in values.items() if key != name}


def _truncate(prefix: Path) -> None:
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def _tf2_object_checkpoint(folder: Path) -> Path:
    return Path(tf.train.Checkpoint(conv=tf.Variable(np.ones([3, 3, 3, 8], np.float32))).write(str(folder / "model-7")))


@pytest.mark.parametrize("case, message", [
    ("missing", "missing variable MODEL/body/0/rdb2/conv3/bias"),
    ("missing_mask", "missing variable Mask/conv1/kernel"),
    ("shape", "Mask/conv8/kernel has shape [3, 3, 8, 2], expected [3, 3, 8, 1]"),
    ("unexpected", "unexpected variable Extra/scale"),
    ("tf2", "TF2 object-based checkpoint"),
    ("truncated", "corrupt or truncated"),
    ("empty_folder", "holds no TensorFlow checkpoint"),
])
def test_bad_checkpoints_are_one_line_exit_3_and_no_file(tmp_path: Path, case: str, message: str) -> None:
    values = random_values(official_shapes(num_block=1, num_feat=8, num_grow_ch=4, mask_feat=8), seed=2)
    folder = tmp_path / "ckpt"
    folder.mkdir()

    def write(values: dict[str, np.ndarray], **extra: dict[str, np.ndarray]) -> Path:
        return write_tf1_checkpoint(folder, values, optimizers=False, **extra)

    if case == "missing":
        checkpoint = write(_drop(values, "MODEL/body/0/rdb2/conv3/bias"))
    elif case == "missing_mask":
        checkpoint = write({k: v for k, v in values.items() if not k.startswith("Mask/")})
    elif case == "shape":
        checkpoint = write(values | {"Mask/conv8/kernel": np.zeros([3, 3, 8, 2], np.float32)})
    elif case == "unexpected":
        checkpoint = write(values, extra={"Extra/scale": np.ones([2], np.float32)})
    elif case == "tf2":
        checkpoint = _tf2_object_checkpoint(folder)
    elif case == "truncated":
        checkpoint = write(values)
        _truncate(checkpoint)
    else:
        checkpoint = folder
    out = tmp_path / "out.safetensors"
    result = import_command(checkpoint, out)
    assert result.exit_code == 3, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.glob("out*")) == [] and list(folder.glob("*.safetensors*")) == []


def test_without_tensorflow_one_line_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         source: tuple[Path, dict[str, np.ndarray]]) -> None:
    monkeypatch.setitem(__import__("sys").modules, "tensorflow", None)  # `import tensorflow` now raises ImportError
    result = import_command(source[0], tmp_path / "out.safetensors")
    assert result.exit_code == 3 and result.stderr.strip() == f"error: {INSTALL_HINT}"
    assert not (tmp_path / "out.safetensors").exists()


# --- the inner step: f2n against the official test.py graph, computed by TensorFlow ---

def tf_conv(x, p: dict, name: str, kernel: str = "weight"):
    return tf.nn.bias_add(tf.nn.conv2d(x, p[f"{name}/{kernel}"], 1, "SAME"), p[f"{name}/bias"])


def tf_sr(x, p: dict, num_block: int):
    """The official MODEL.forward (model/model.py), NHWC."""
    def lrelu(t):
        return tf.nn.leaky_relu(t, 0.2)

    head = res = tf_conv(x, p, "MODEL/conv_first")
    for i in range(num_block):
        block_in = res
        for j in range(1, 4):
            dense_in, features = res, [res]
            for k in range(1, 5):
                features.append(lrelu(tf_conv(tf.concat(features, 3), p, f"MODEL/body/{i}/rdb{j}/conv{k}")))
            res = tf_conv(tf.concat(features, 3), p, f"MODEL/body/{i}/rdb{j}/conv5") * 0.2 + dense_in
        res = res * 0.2 + block_in
    res = tf_conv(res, p, "MODEL/conv_body") + head
    res = lrelu(tf_conv(tf.repeat(tf.repeat(res, 2, axis=1), 2, axis=2), p, "MODEL/conv_up1"))
    res = lrelu(tf_conv(tf.repeat(tf.repeat(res, 2, axis=1), 2, axis=2), p, "MODEL/conv_up2"))
    return tf_conv(lrelu(tf_conv(res, p, "MODEL/conv_hr")), p, "MODEL/conv_last")


def tf_mask(inputa, labela, p: dict):
    """test.py's W: MaskNet(concat(resize_bicubic(inputa, label size, align_corners=False), label)),
    ReLU after all eight convs."""
    size = tf.shape(labela)[1:3]
    upsampled = tf.raw_ops.ResizeBicubic(images=inputa, size=size, align_corners=False, half_pixel_centers=False)
    x = tf.concat([upsampled, labela], axis=3)
    for k in range(1, 9):
        x = tf.nn.relu(tf_conv(x, p, f"Mask/conv{k}", "kernel"))
    return x


def test_one_f2n_step_equals_the_official_test_step(source: tuple[Path, dict[str, np.ndarray]], imported: Path) -> None:
    _, values = source
    rng = np.random.default_rng(5)
    inputa = rng.random((3, 12, 12, 3), dtype=np.float32)  # LQ patches, RGB in [0, 1]
    labela = rng.random((3, 48, 48, 3), dtype=np.float32)  # restored patches

    # TensorFlow: loss = mean(W · |label − f(input)|); one GradientDescentOptimizer(0.01) step on MODEL only
    params = {name: tf.Variable(value) for name, value in values.items()}
    sr_names = [name for name in values if name.startswith("MODEL/")]
    with tf.GradientTape() as tape:
        weight_tf = tf_mask(inputa, labela, params)
        loss_tf = tf.reduce_mean(weight_tf * tf.abs(labela - tf_sr(inputa, params, TINY["num_block"])))
    grads = tape.gradient(loss_tf, [params[name] for name in sr_names])
    step_tf = {name: -0.01 * grad.numpy() for name, grad in zip(sr_names, grads)}

    # f2n, with the settings and MaskNet the imported checkpoint carries
    loaded = load_sr_network(imported)
    masknet = checkpoint_masknet(loaded.masknet_state, "cpu", loaded.masknet_lq_resize)
    lq, target = (torch.from_numpy(a).permute(0, 3, 1, 2).contiguous() for a in (inputa, labela))
    weight = patch_weights(lq, target, torch.ones(3, 1, 48, 48), masknet)
    settings = resolve_settings({}, loaded)  # what f2n-adapt-and-run --checkpoint resolves for this file
    result = adapt(loaded.model, PatchBatch(lq, target, weight),
                   AdaptConfig(steps=settings.steps, lr=settings.lr, optimizer=settings.optimizer, params=settings.params,
                               guard=settings.guard, holdout=settings.holdout))

    assert weight.mean() > 0.1  # the masks are not trivially zero
    np.testing.assert_allclose(weight.permute(0, 2, 3, 1).numpy(), weight_tf.numpy(), rtol=1e-5, atol=1e-5)
    assert result.losses[0] == pytest.approx(float(loss_tf), rel=1e-5)
    for name in sr_names:
        key = name.removeprefix("MODEL/").replace("/", ".")
        step_f2n = to_hwio(result.delta[key])
        # θ′ − θ of f2n carries θ′'s float32 rounding (half an ulp of θ): allow one ulp on top
        scale, ulp = np.abs(step_tf[name]).max(), np.spacing(np.abs(values[name]).max())
        assert scale > 100 * ulp, name  # the step is far above the rounding, so a wrong step fails
        np.testing.assert_allclose(step_f2n, step_tf[name], rtol=0, atol=1e-4 * scale + ulp, err_msg=name)


@pytest.mark.slow
def test_imported_checkpoint_runs_as_the_paper_does_on_every_cpu_engine(imported: Path, tmp_path: Path,
                                                                      tiny_aoti_package: Path,
                                                                      isolated_f2n_home: Path) -> None:
    """f2n-adapt-and-run --checkpoint imported.safetensors: one SGD step at 1e-2 with the
    imported MaskNet and 16 pairs per face, whatever the engine (the AOTInductor package of the
    tiny network's architecture is compiled once per session and found in the engine cache)."""
    seed_engine_cache(tiny_aoti_package, isolated_f2n_home)
    from f2n.runtime import cli as run_cli
    from f2n.eval.demo import demo_pair
    from f2n.runtime.images import read_image, write_image

    gt, lq = demo_pair()
    write_image(tmp_path / "gt.png", gt)
    write_image(tmp_path / "photo.png", lq)
    fast = ["--tile", "64", "--tile-overlap", "16", "--no-progress", "--precision", "fp32",
            "--checkpoint", str(imported), "--prior", f"oracle:{tmp_path / 'gt.png'}"]
    outputs = {}
    for engine in ("torch", "onnx", "aoti"):
        outputs[engine], report = tmp_path / f"{engine}.png", tmp_path / f"{engine}.json"
        result = CliRunner().invoke(run_cli.command, [str(tmp_path / "photo.png"), "--out", str(outputs[engine]),
                                                      "--engine", engine, "--report", str(report), *fast])
        assert result.exit_code == 0, result.output
        photo = json.loads(report.read_text())["photos"][0]
        settings = photo["settings"]
        assert photo["adapted"] and len(photo["losses"]) == 1
        assert (settings["adapt"]["optimizer"], settings["adapt"]["lr"], settings["adapt"]["steps"]) == ("sgd", 0.01, 1)
        assert settings["mask"] == "masknet" and settings["masknet_lq_resize"] == "tf1-bicubic"
        assert settings["patches"]["count"] == 16 and settings["patches"]["per_image"] is None
        assert [face["num_patches"] for face in photo["faces"] if face["used"]] == [16]
    torch_rgb = read_image(outputs["torch"]).rgb
    for engine in ("onnx", "aoti"):
        assert np.abs(read_image(outputs[engine]).rgb - torch_rgb).max() <= 2 / 255, engine
    base = CliRunner().invoke(run_cli.command, [str(tmp_path / "photo.png"), "--out", str(tmp_path / "base.png"),
                                                "--no-adapt", *fast])
    assert base.exit_code == 0
    assert np.abs(read_image(tmp_path / "base.png").rgb - torch_rgb).max() > 2 / 255  # θ_1 reached the engines


def test_an_imported_file_is_added_as_metaf2n_and_loads_by_name(tmp_path: Path, imported: Path,
                                                                isolated_f2n_home: Path) -> None:
    """``f2n-models add metaf2n FILE`` takes a file of the official (x4plus-sized) shapes
    only; ``--checkpoint metaf2n`` then loads it with its settings."""
    from f2n.nets import MaskNet, RRDBNet
    from f2n.weights.checkpoint import save_f2n_checkpoint
    from f2n.weights.metaf2n_import import OFFICIAL_SETTINGS

    torch.manual_seed(0)
    full = save_f2n_checkpoint(tmp_path / "full.safetensors", RRDBNet().state_dict(), MaskNet().state_dict(),
                               OFFICIAL_SETTINGS)
    runner = CliRunner()
    tiny = runner.invoke(models_cli.main, ["add", "metaf2n", str(imported)])
    assert tiny.exit_code == 3 and "do not fit ImportedMetaF2N" in tiny.stderr and tiny.stderr.count("\n") == 1
    added = runner.invoke(models_cli.main, ["add", "metaf2n", str(full)])
    assert added.exit_code == 0, added.output
    loaded = load_sr_network("metaf2n")
    assert loaded.path == isolated_f2n_home / "metaf2n.safetensors" and loaded.adaptation_defaults.optimizer == "sgd"
    assert loaded.descriptor.num_block == 23 and loaded.masknet_lq_resize == "tf1-bicubic"
