//! A tensor's values back on the host, as a `Result`: Burn's `into_data` panics when a backend
//! cannot read (a CUDA fault), and `into_vec` fails on a dtype it cannot convert. A failed read
//! must stop whatever wanted the values, never become an empty tensor that gets saved.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Why a tensor's values could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read a tensor of shape {shape:?} from the device: {message}")]
pub struct ReadError {
    pub shape: Vec<usize>,
    pub message: String,
}

/// The elements of `t` as f32, in row-major order.
pub fn f32s<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, ReadError> {
    let shape = t.dims().to_vec();
    let fail = |message: String| ReadError { shape: shape.clone(), message };
    let data = t.try_into_data().map_err(|e| fail(format!("{e:?}")))?;
    data.convert::<f32>().into_vec::<f32>().map_err(|e| fail(format!("{e:?}")))
}

/// The elements of `t` as f64, in row-major order.
pub fn f64s<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f64>, ReadError> {
    let shape = t.dims().to_vec();
    let fail = |message: String| ReadError { shape: shape.clone(), message };
    let data = t.try_into_data().map_err(|e| fail(format!("{e:?}")))?;
    data.convert::<f64>().into_vec::<f64>().map_err(|e| fail(format!("{e:?}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn reads_values_in_row_major_order() {
        let t = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.5]], &Default::default());
        assert_eq!(f32s(t.clone()).unwrap(), vec![1.0, 2.0, 3.0, 4.5]);
        assert_eq!(f64s(t).unwrap(), vec![1.0, 2.0, 3.0, 4.5]);
    }
}
