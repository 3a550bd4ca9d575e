//! The CPU backend, recognised at run time, and the two things every kernel here does with it:
//! dispatch (run the kernel on `Flex`, record it on `Autodiff<Flex>`, else let the caller use
//! Burn's op) and recording (one autodiff op, its state kept only when a gradient is wanted).
//!
//! The models are generic over `Backend`. Where a kernel here is faster on the CPU backend, it
//! finds out by type (`Any`) whether the tensors it was given are that backend's, instead of
//! adding a backend-extension trait to every signature.

use std::any::Any;

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bytes, DType, Shape, Tensor, TensorPrimitive};
use rayon::prelude::*;

/// The CPU training backend.
pub(crate) type HostTrain = Autodiff<Flex>;

/// Which CPU backend a kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    /// `Flex`: the kernel alone, no autodiff.
    Infer,
    /// `Autodiff<Flex>`: the kernel recorded as one op.
    Train,
}

impl Host {
    /// `B` as a CPU backend, or `None` for every other backend (CUDA, ...).
    pub(crate) fn of<B: Backend>() -> Option<Self> {
        if is::<B, Flex>() {
            Some(Self::Infer)
        } else if is::<B, HostTrain>() {
            Some(Self::Train)
        } else {
            None
        }
    }

    /// `B` as a CPU backend, when every tensor of `dtypes` is f32 (the kernels' one dtype).
    pub(crate) fn of_f32<B: Backend>(dtypes: &[DType]) -> Option<Self> {
        Self::of::<B>().filter(|_| dtypes.iter().all(|d| *d == DType::F32))
    }
}

/// A float tensor's primitive, for [`dispatch`].
pub(crate) fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// Runs a kernel on the CPU backend `host` (from [`Host::of`]): `infer` on `Flex`'s tensors,
/// `train` on `Autodiff<Flex>`'s, which records the op. The one place where a generic `B` is
/// turned into the CPU backend's types and back.
///
/// # Panics
/// If `B` is not the backend `host` says it is (callers pass `Host::of::<B>()`).
pub(crate) fn dispatch<B: Backend, const N: usize, const D: usize>(
    host: Host,
    inputs: [FloatTensor<B>; N],
    infer: impl FnOnce([FlexTensor; N]) -> FlexTensor,
    train: impl FnOnce([FloatTensor<HostTrain>; N]) -> FloatTensor<HostTrain>,
) -> Tensor<B, D> {
    let out: FloatTensor<B> = match host {
        Host::Infer => same(infer(inputs.map(same))),
        Host::Train => same(train(inputs.map(same))),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// [`dispatch`] for an op that exists only while training on the CPU (a dropout mask): `B` is
/// `Autodiff<Flex>`, which the caller has checked.
pub(crate) fn dispatch_train<B: Backend, const N: usize, const D: usize>(
    inputs: [FloatTensor<B>; N],
    train: impl FnOnce([FloatTensor<HostTrain>; N]) -> FloatTensor<HostTrain>,
) -> Tensor<B, D> {
    dispatch(Host::Train, inputs, |_| unreachable!("the caller checked that this is the training backend"), train)
}

/// Records `op` with `inputs` as its parents: `tracked` computes the output and the state the
/// backward needs when a parent wants a gradient; `untracked` the output alone (it may reuse the
/// input buffers that the state would have kept).
pub(crate) fn record<O, const N: usize>(
    op: O,
    inputs: [FloatTensor<HostTrain>; N],
    tracked: impl FnOnce([FloatTensor<HostTrain>; N]) -> (FlexTensor, O::State),
    untracked: impl FnOnce([FloatTensor<HostTrain>; N]) -> FlexTensor,
) -> FloatTensor<HostTrain>
where
    O: Backward<Flex, N>,
{
    let parents = inputs.each_ref().map(|t| t.node.clone());
    match op.prepare::<NoCheckpointing>(parents).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, state) = tracked(inputs);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(untracked(inputs)),
    }
}

/// `value` as a `U` when `T` is `U`, else `value` back.
pub(crate) fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
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
pub(crate) fn same<T: 'static, U: 'static>(value: T) -> U {
    cast(value).unwrap_or_else(|_| unreachable!("the type was checked before"))
}

/// Whether `T` is `U`.
pub(crate) fn is<T: 'static, U: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
}

/// `t` contiguous and covering its whole buffer, so that `storage_mut` is its elements: `t`
/// itself when it already is (no copy), else a contiguous copy. A buffer that another tensor
/// shares is still copied by `storage_mut` when written (copy on write).
pub(crate) fn owned_contiguous(t: FlexTensor) -> FlexTensor {
    if is_whole(&t) { t } else { contiguous(&t) }
}

/// Whether `t` is contiguous and covers its whole buffer from the start (`storage` is its
/// elements, in order).
pub(crate) fn is_whole(t: &FlexTensor) -> bool {
    t.is_contiguous()
        && t.layout().start_offset() == 0
        && t.layout().num_elements() * t.dtype().size() == t.bytes().len()
}

/// A contiguous f32 tensor's elements, from its offset (however large its buffer).
pub(crate) fn elements(t: &FlexTensor) -> &[f32] {
    let start = t.layout().start_offset();
    &t.storage::<f32>()[start..start + t.layout().num_elements()]
}

/// `t` contiguous: `t` itself when it already is; for an f32 view whose rows are runs (a last
/// stride of 1: head splits and merges, slices of the last dimension) a copy made by rows in
/// parallel, where burn-flex's `to_contiguous` walks anything it cannot collapse to two
/// dimensions one element at a time on one thread; else flex's copy (one `memcpy` for a
/// contiguous slice, cache tiles for a transpose).
pub(crate) fn contiguous(t: &FlexTensor) -> FlexTensor {
    let layout = t.layout();
    let rank = layout.num_dims();
    let n = layout.num_elements();
    let rows_are_runs = rank > 1 && layout.strides()[rank - 1] == 1;
    if t.is_contiguous() || !rows_are_runs || t.dtype() != DType::F32 || n < 1 << 15 {
        return t.to_contiguous();
    }
    let (shape, strides) = (layout.shape().to_vec(), layout.strides().to_vec());
    let last = shape[rank - 1];
    let data = t.storage::<f32>();
    let start = layout.start_offset() as isize;
    // The element offset of row `r` (an index over every dimension but the last).
    let row_offset = |mut r: usize| {
        let mut offset = start;
        for d in (0..rank - 1).rev() {
            offset += (r % shape[d]) as isize * strides[d];
            r /= shape[d];
        }
        offset
    };
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(last).enumerate().with_min_len((4096 / last).max(1)).for_each(|(r, row)| {
        let begin = row_offset(r) as usize;
        row.copy_from_slice(&data[begin..begin + last]);
    });
    tensor(out, shape)
}

/// A contiguous f32 tensor of `shape` holding `values`.
pub(crate) fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(Shape::from(shape)), DType::F32)
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

    #[test]
    fn recognises_the_cpu_backends_and_f32() {
        assert_eq!(Host::of::<Flex>(), Some(Host::Infer));
        assert_eq!(Host::of::<HostTrain>(), Some(Host::Train));
        assert_eq!(Host::of_f32::<Flex>(&[DType::F32, DType::F32]), Some(Host::Infer));
        assert_eq!(Host::of_f32::<HostTrain>(&[DType::F32, DType::F16]), None);
    }

    /// The copy equals flex's for views with and without a unit last stride (ours, flex's), a
    /// contiguous slice with an offset (flex's) and more rows than one task; whole contiguous
    /// tensors are not copied.
    #[test]
    fn contiguous_copies_views_as_flex_does() {
        let _generator = crate::testing::generator();
        let x = Tensor::<Flex, 4>::random([3, 40, 6, 50], burn::tensor::Distribution::Default, &Default::default());
        let views = [
            x.clone().swap_dims(1, 2),
            x.clone().swap_dims(2, 3),
            x.clone().permute([3, 1, 0, 2]),
            x.clone().slice([1..3, 5..40, 0..6, 10..50]).swap_dims(0, 1),
            x.clone().slice([1..3, 0..40, 0..6, 0..50]),
        ];
        for (i, view) in views.into_iter().enumerate() {
            let t = view.into_primitive().tensor();
            let (ours, flex) = (contiguous(&t), t.to_contiguous());
            assert!(ours.is_contiguous(), "view {i}");
            assert_eq!(ours.layout().shape(), flex.layout().shape(), "view {i}");
            assert_eq!(ours.storage::<f32>(), flex.storage::<f32>(), "view {i}");
        }
        let whole = x.into_primitive().tensor();
        assert!(std::sync::Arc::ptr_eq(&contiguous(&whole).data_arc(), &whole.data_arc()));
    }
}
