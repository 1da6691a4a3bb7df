//! The XDP program. All decisions are in `l2announcer_common::responder`; this file only
//! adapts packet memory and BPF maps to it and keeps the counters.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_tail},
    macros::{map, xdp},
    maps::{Array, PerCpuHashMap},
    programs::XdpContext,
};
use l2announcer_common::{
    Counters, Entry, KeyV4, KeyV6, LIVENESS_HEARTBEAT, LIVENESS_MAX_AGE, MAX_ANNOUNCEMENTS,
    MAX_INTERFACES,
    responder::{self, Frame, Liveness, Table, Verdict},
};

#[map]
static ANNOUNCE_V4: PerCpuHashMap<KeyV4, Entry> =
    PerCpuHashMap::with_max_entries(MAX_ANNOUNCEMENTS, 0);

#[map]
static ANNOUNCE_V6: PerCpuHashMap<KeyV6, Entry> =
    PerCpuHashMap::with_max_entries(MAX_ANNOUNCEMENTS, 0);

#[map]
static COUNTERS: PerCpuHashMap<u32, Counters> = PerCpuHashMap::with_max_entries(MAX_INTERFACES, 0);

#[map]
static LIVENESS: Array<u64> = Array::with_max_entries(2, 0);

/// Packet memory, bounds-checked on every access against the current `data_end` (re-read
/// each time, so it stays right after `bpf_xdp_adjust_tail`).
struct Packet<'a>(&'a XdpContext);

impl Frame for Packet<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }

    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.0.data() + offset;
        if start + N > self.0.data_end() {
            return None;
        }
        // SAFETY: [start, start + N) was checked to lie within the packet.
        Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
    }

    #[inline(always)]
    fn store<const N: usize>(&mut self, offset: usize, bytes: &[u8; N]) -> Option<()> {
        let start = self.0.data() + offset;
        if start + N > self.0.data_end() {
            return None;
        }
        // SAFETY: as in `load`; XDP packet memory is writable.
        unsafe { core::ptr::write_unaligned(start as *mut [u8; N], *bytes) };
        Some(())
    }

    #[inline(always)]
    fn resize(&mut self, new_len: usize) -> bool {
        let delta = new_len as i32 - self.len() as i32;
        // SAFETY: the helper checks the new length against the frame's tailroom.
        unsafe { bpf_xdp_adjust_tail(self.0.ctx, delta) == 0 }
    }
}

struct Maps;

impl Table for Maps {
    #[inline(always)]
    fn v4(&mut self, key: &KeyV4) -> Option<&mut Entry> {
        // SAFETY: per-CPU value: no other program instance touches this CPU's copy meanwhile.
        ANNOUNCE_V4.get_ptr_mut(key).map(|p| unsafe { &mut *p })
    }

    #[inline(always)]
    fn v6(&mut self, key: &KeyV6) -> Option<&mut Entry> {
        // SAFETY: as above.
        ANNOUNCE_V6.get_ptr_mut(key).map(|p| unsafe { &mut *p })
    }
}

struct Heartbeat;

impl Liveness for Heartbeat {
    #[inline(always)]
    fn live(&self) -> bool {
        let Some(beat) = LIVENESS.get(LIVENESS_HEARTBEAT) else {
            return false;
        };
        let Some(max_age) = LIVENESS.get(LIVENESS_MAX_AGE) else {
            return false;
        };
        // SAFETY: reading the monotonic clock has no preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        *beat != 0 && now.saturating_sub(*beat) <= *max_age
    }
}

#[xdp]
pub fn l2announcer(ctx: XdpContext) -> u32 {
    // SAFETY: the context pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let outcome = responder::respond(&mut Packet(&ctx), ifindex, &mut Maps, &Heartbeat);
    if let Some(result) = outcome.result {
        if let Some(counters) = COUNTERS.get_ptr_mut(&ifindex) {
            // SAFETY: per-CPU value, as for the entries.
            let counters = unsafe { &mut (*counters).0 };
            if let Some(seen) = outcome.seen {
                if let Some(c) = counters.get_mut(seen as usize) {
                    *c += 1;
                }
            }
            if let Some(c) = counters.get_mut(result as usize) {
                *c += 1;
            }
        }
    }
    match outcome.verdict {
        Verdict::Tx => xdp_action::XDP_TX,
        Verdict::Pass => xdp_action::XDP_PASS,
    }
}

/// Passes everything. Attached to the peer of a veth in the test lab: native-mode `XDP_TX`
/// on a veth is only delivered when the peer runs an XDP program too.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The benchmark floor (never attached): the least an XDP responder can do, swap the Ethernet
/// addresses and send the frame back.
#[xdp]
pub fn xdp_floor(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 12 bytes of both addresses were checked to lie within the packet.
    unsafe {
        let dst = core::ptr::read_unaligned(start as *const [u8; 6]);
        let src = core::ptr::read_unaligned((start + 6) as *const [u8; 6]);
        core::ptr::write_unaligned(start as *mut [u8; 6], src);
        core::ptr::write_unaligned((start + 6) as *mut [u8; 6], dst);
    }
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
