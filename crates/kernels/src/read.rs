//! A tensor's values back on the host, as a `Result`: Burn's `into_data` panics when a backend
//! cannot read (a CUDA fault), and `into_vec` fails on a dtype it cannot convert. A failed read
//! must stop whatever wanted the values, never become an empty tensor that gets saved.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

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
    let data = float_data(t)?.convert::<f32>();
    data.into_vec::<f32>().map_err(|e| ReadError { shape, message: format!("{e:?}") })
}

/// The elements of `t` as f64, in row-major order.
pub fn f64s<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f64>, ReadError> {
    let shape = t.dims().to_vec();
    let data = float_data(t)?.convert::<f64>();
    data.into_vec::<f64>().map_err(|e| ReadError { shape, message: format!("{e:?}") })
}

/// `t`'s data, read from the device, in a float dtype (which converts to any other float; a
/// quantized tensor's data does not, and Burn's `convert` would panic on it).
fn float_data<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<TensorData, ReadError> {
    let shape = t.dims().to_vec();
    let data = t.try_into_data().map_err(|e| ReadError { shape: shape.clone(), message: format!("{e:?}") })?;
    if !data.dtype.is_float() {
        return Err(ReadError { shape, message: format!("its dtype {:?} is not a float type", data.dtype) });
    }
    Ok(data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// A read that cannot give f32s (a quantized tensor's data stays quantized) is an error,
    /// where `into_vec().unwrap_or_default()` gave an empty vector that was then saved.
    #[test]
    fn a_read_that_cannot_give_f32s_is_an_error() {
        let t = Tensor::<Flex, 1>::from_floats([1.0, -2.0, 3.0], &Default::default());
        let quantized = t.quantize_dynamic(&burn::tensor::quantization::QuantScheme::default());
        let err = f32s(quantized).unwrap_err();
        assert_eq!(err.shape, [3]);
        assert!(err.to_string().contains("shape [3]"), "{err}");
    }

    #[test]
    fn reads_values_in_row_major_order() {
        let t = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.5]], &Default::default());
        assert_eq!(f32s(t.clone()).unwrap(), vec![1.0, 2.0, 3.0, 4.5]);
        assert_eq!(f64s(t).unwrap(), vec![1.0, 2.0, 3.0, 4.5]);
    }
}
