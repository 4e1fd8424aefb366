//! The networks `memkin cost` compares: the DDK network, the same readout on
//! the raw inputs, and crossbar versions of the paper's deep baselines, with
//! the shapes of the authors' code (github.com/gllspeed/DDK).

use super::network::{KineticsActivity, KineticsLayer, Layer, LayerKind, Network};

/// Fully connected layers `sizes[0] - sizes[1] - ... - sizes[n]` with biases,
/// each applied `uses` times per inference.
pub fn fc_stack(sizes: &[usize], uses: usize) -> Vec<Layer> {
    sizes
        .windows(2)
        .map(|w| Layer::fc(&format!("fc {}-{}", w[0], w[1]), w[0], w[1], uses))
        .collect()
}

fn join(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

/// The DDK network: a kinetics layer (`devices` devices, `steps` steps,
/// `passes` passes per inference, `device_parameters` alpha/beta values)
/// followed by the readout `sizes` (`sizes[0] = devices * steps`), applied
/// once per pass.
pub fn ddk(
    devices: usize,
    steps: usize,
    passes: usize,
    device_parameters: usize,
    activity: KineticsActivity,
    sizes: &[usize],
) -> Network {
    let mut layers = vec![Layer {
        name: format!("kinetics {devices} x {steps}"),
        kind: LayerKind::Kinetics(KineticsLayer {
            devices,
            steps,
            passes,
            parameters: device_parameters,
            activity,
        }),
    }];
    layers.extend(fc_stack(sizes, passes));
    Network {
        name: format!("DDK + FC {}", join(sizes)),
        source: "memkin run's protocol for the dataset (the paper's readout)".into(),
        layers,
    }
}

/// The same readout on the raw inputs (no kinetics layer).
pub fn raw(sizes: &[usize], passes: usize) -> Network {
    Network {
        name: format!("raw + FC {}", join(sizes)),
        source: "memkin run --no-device: the same readout on the raw inputs".into(),
        layers: fc_stack(sizes, passes),
    }
}

/// A 2-D convolution (valid padding, stride 1 unless given) unrolled onto a
/// crossbar: `k*k*c_in` rows, `c_out` columns, one use per output pixel.
fn conv2d(name: &str, c_in: usize, c_out: usize, k: usize, out_hw: usize) -> Layer {
    Layer::crossbar(name, k * k * c_in, c_out, out_hw * out_hw, c_out)
}

/// LeNet-5 as in the authors' MNIST baseline
/// (DDK/Image_classification/mnist_classification_CNN/model.py): conv 3x3 6,
/// pool 2, conv 3x3 16, pool 2, FC 400-120-84-10 (biases; pooling and ReLU in
/// digital periphery, not costed).
pub fn lenet5(classes: usize) -> Network {
    let mut layers = vec![
        conv2d("conv1 3x3x1-6", 1, 6, 3, 26),
        conv2d("conv2 3x3x6-16", 6, 16, 3, 11),
    ];
    layers.extend(fc_stack(&[400, 120, 84, classes], 1));
    Network {
        name: "LeNet-5".into(),
        source: "gllspeed/DDK Image_classification/mnist_classification_CNN/model.py".into(),
        layers,
    }
}

/// VoxNet as in the authors' ModelNet10 baseline
/// (DDK/3D_object_recognition/VoxNet.pytorch-master/conv_models.py) on 32^3
/// voxels: conv3d 5^3 stride 2 1-32 (14^3 outputs), conv3d 3^3 32-32 (12^3),
/// max-pool 2 (6^3), FC 6912-128-classes.
pub fn voxnet(classes: usize) -> Network {
    let mut layers = vec![
        Layer::crossbar("conv3d1 5^3x1-32 s2", 125, 32, 14 * 14 * 14, 32),
        Layer::crossbar("conv3d2 3^3x32-32", 27 * 32, 32, 12 * 12 * 12, 32),
    ];
    layers.extend(fc_stack(&[32 * 6 * 6 * 6, 128, classes], 1));
    Network {
        name: "VoxNet".into(),
        source: "gllspeed/DDK 3D_object_recognition/VoxNet.pytorch-master/conv_models.py".into(),
        layers,
    }
}

/// The authors' raw-waveform 1-D CNN for SITW
/// (DDK/Audio_recognition/RAW+1DCNN/raw_1Dconv_pytorch_SITW1/model.py): conv
/// k3 s3 1-128, then four conv k3 (128-128, 128-128, 128-256, 256-256), each
/// followed by max-pool 3, FC 512-512-classes, no biases, batch norm (2
/// parameters per channel, folded into the weights on chip). The input length,
/// 1458 samples, is inferred: the authors' raw .mat is not in the datasets,
/// and 1458 = 2 x 3^6 is the length for which the flattened output (256 x 2)
/// matches fc1's 512 inputs.
pub fn cnn1d_sitw(classes: usize) -> Network {
    // Output lengths: conv1 486, pools -> 162, 54, 18, 6, 2.
    let layers = vec![
        Layer::crossbar("conv1 k3x1-128 s3", 3, 128, 486, 256),
        Layer::crossbar("conv2 k3x128-128", 3 * 128, 128, 162, 256),
        Layer::crossbar("conv3 k3x128-128", 3 * 128, 128, 54, 256),
        Layer::crossbar("conv4 k3x128-256", 3 * 128, 256, 18, 512),
        Layer::crossbar("conv5 k3x256-256", 3 * 256, 256, 6, 512),
        Layer::crossbar("fc 512-512", 512, 512, 1, 0),
        Layer::crossbar(&format!("fc 512-{classes}"), 512, classes, 1, 0),
    ];
    Network {
        name: "raw 1-D CNN".into(),
        source: "gllspeed/DDK Audio_recognition/RAW+1DCNN/raw_1Dconv_pytorch_SITW1/model.py (input length 1458 inferred)".into(),
        layers,
    }
}

/// The authors' BiLSTM text baseline for AG News
/// (DDK/text_classification/rcnn-transformer-text-classification-pytorch-master/model_lstm.py,
/// main.py defaults: 64 words, embedding 300, hidden 512, linear 512, 4
/// classes): per direction, the four gates' `(300 + 512) x 2048` matrix once
/// per word; then `W` (300 + 1024) x 512 per word, max-pool over words, FC
/// 512-4. The embedding table (shared with the DDK text network) and the
/// gates' elementwise functions are not costed.
pub fn bilstm_agnews(classes: usize) -> Network {
    let (e, h, t) = (300, 512, 64);
    let layers = vec![
        Layer::crossbar("lstm forward (300+512)x2048", e + h, 4 * h, t, 8 * h),
        Layer::crossbar("lstm backward (300+512)x2048", e + h, 4 * h, t, 8 * h),
        Layer::fc("W 1324-512", e + 2 * h, 512, t),
        Layer::fc(&format!("fc 512-{classes}"), 512, classes, 1),
    ];
    Network {
        name: "BiLSTM (RCNN)".into(),
        source: "gllspeed/DDK text_classification/rcnn-transformer-text-classification-pytorch-master/model_lstm.py + main.py defaults".into(),
        layers,
    }
}
