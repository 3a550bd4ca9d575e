//! Recognising the CPU backend at run time, for the kernels that replace some of Burn's ops there.
//!
//! The models are generic over `Backend`. Where this workspace has a faster kernel for the CPU
//! backend (`Flex`, and `Autodiff<Flex>` for training), it finds out by type (`Any`) whether the
//! tensors it was given are that backend's, instead of adding a backend-extension trait to every
//! signature. On any other backend the callers fall back to Burn's own op.

use std::any::Any;

use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};

/// The CPU training backend.
pub type HostTrain = Autodiff<Flex>;

/// `value` as a `U` when `T` is `U`, else `value` back.
pub fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    if let Some(u) = (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>().and_then(Option::take) {
        return Ok(u);
    }
    slot.map_or_else(|| unreachable!("the value stays in its slot when the cast fails"), Err)
}

/// `value` as the type it is already known (by [`is`]) to be.
///
/// # Panics
/// If `T` is not `U`: a caller that checked with [`is`] first never sees it.
pub fn same<T: 'static, U: 'static>(value: T) -> U {
    cast(value).unwrap_or_else(|_| unreachable!("the type was checked before"))
}

/// Whether `T` is `U`.
pub fn is<T: 'static, U: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
}

/// `t` contiguous and covering its whole buffer, so that `storage_mut` is its elements: `t`
/// itself when it already is (no copy), else a contiguous copy. A buffer that another tensor
/// shares is still copied by `storage_mut` when written (copy on write).
pub fn owned_contiguous(t: FlexTensor) -> FlexTensor {
    let whole = t.layout().num_elements() * t.dtype().size() == t.bytes().len();
    if t.is_contiguous() && t.layout().start_offset() == 0 && whole { t } else { t.to_contiguous() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_only_to_the_same_type() {
        assert_eq!(cast::<u32, u32>(7), Ok(7));
        assert_eq!(cast::<u32, i32>(7), Err(7));
        assert!(is::<Flex, Flex>());
        assert!(!is::<Flex, HostTrain>());
    }
}
