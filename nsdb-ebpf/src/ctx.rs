//! What the check and learning code needs of the packet, for both attachment points: the XDP
//! hook (`XdpContext`) and the TC ingress hook (`TcContext`, tcx or clsact). All of parse.rs,
//! query.rs and response.rs are generic over [`Packet`] and inlined into each entry point, so
//! the two programs run the same code.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_skb_load_bytes, bpf_skb_pull_data, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};

/// A packet at one of the hooks.
pub trait Packet {
    /// Start of the directly readable bytes (XDP: the frame; TC: the linear part of the skb).
    fn data(&self) -> usize;
    /// End of the directly readable bytes.
    fn data_end(&self) -> usize;
    /// Length of the whole packet, which [`Packet::load_bytes`] can read: the frame for XDP,
    /// `skb->len` (linear part and fragments) for TC.
    fn len(&self) -> usize;
    /// Copies `len` bytes at `offset` into `buf` (bpf_xdp_load_bytes / bpf_skb_load_bytes);
    /// 0 on success.
    ///
    /// # Safety
    /// `buf` must be valid for `len` bytes of writes.
    unsafe fn load_bytes(&self, offset: u32, buf: *mut c_void, len: u32) -> i64;
    /// The interface the packet arrived on.
    fn ingress_ifindex(&self) -> u32;
    /// Makes the headers directly readable if the hook may have left them out of `data()..
    /// data_end()`. Called only for packets the fast exit did not settle (see parse.rs).
    fn linearize_headers(&self);
}

impl Packet for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    #[inline(always)]
    fn len(&self) -> usize {
        XdpContext::data_end(self).saturating_sub(XdpContext::data(self))
    }
    #[inline(always)]
    unsafe fn load_bytes(&self, offset: u32, buf: *mut c_void, len: u32) -> i64 {
        // SAFETY: the caller guarantees `buf`; the helper checks the packet bounds.
        unsafe { bpf_xdp_load_bytes(self.ctx, offset, buf, len) }
    }
    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: the context pointer the kernel passed.
        unsafe { (*self.ctx).ingress_ifindex }
    }
    #[inline(always)]
    fn linearize_headers(&self) {
        // Single-buffer XDP frames are wholly linear.
    }
}

/// How much of a non-linear skb is pulled into the linear part for the header walk: Ethernet,
/// two VLAN tags, IPv6 with the extension headers real traffic carries, UDP and the DNS
/// header fit with room to spare.
const PULL_LEN: u32 = 256;

impl Packet for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn len(&self) -> usize {
        TcContext::len(self) as usize
    }
    #[inline(always)]
    unsafe fn load_bytes(&self, offset: u32, buf: *mut c_void, len: u32) -> i64 {
        // SAFETY: as for XDP; bpf_skb_load_bytes also reads the skb's fragments.
        unsafe { bpf_skb_load_bytes(self.skb.skb as *const c_void, offset, buf, len) }
    }
    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // At ingress `skb->ifindex` is the receiving device. (`ingress_ifindex` is the same
        // there, but BPF_PROG_TEST_RUN leaves it 0 while it runs on the loopback device.)
        // SAFETY: the context pointer the kernel passed.
        unsafe { (*self.skb.skb).ifindex }
    }
    /// Direct packet access covers only the linear part of an skb. Most drivers and veth put
    /// all headers there, but some (virtio-net, header-split NICs, AF_PACKET senders) leave
    /// part of them in page fragments, and a header walk that stops short would pass a query
    /// unchecked. So a packet that the fast exit did not settle (port 53 or unusual headers)
    /// and whose linear part is shorter than both the packet and PULL_LEN is pulled:
    /// bpf_skb_pull_data copies at most PULL_LEN bytes, only for these packets, never for
    /// the plain non-DNS bulk. If the pull fails (no memory) or the headers are longer still,
    /// the walk finds them cut short and the packet passes, counted as malformed (fail-open).
    #[inline(always)]
    fn linearize_headers(&self) {
        let len = TcContext::len(self);
        let linear = TcContext::data_end(self).saturating_sub(TcContext::data(self)) as u32;
        if linear < len && linear < PULL_LEN {
            let want = if len < PULL_LEN { len } else { PULL_LEN };
            // SAFETY: the context pointer the kernel passed; the packet pointers are re-read
            // from the context after this (every access goes through data()/data_end()).
            let _ = unsafe { bpf_skb_pull_data(self.skb.skb, want) };
        }
    }
}
