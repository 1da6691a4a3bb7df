//! The Internet checksum (RFC 1071) as ICMPv6 uses it, written with fixed-size arrays and
//! no data-dependent loops so that the eBPF verifier accepts it.

/// Adds the big-endian 16-bit words of `bytes` to `sum`. `N` must be even.
#[inline(always)]
pub fn add_words<const N: usize>(mut sum: u32, bytes: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1) for an upper-layer packet of `len` bytes.
#[inline(always)]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], len: u32, next_header: u8) -> u32 {
    let sum = add_words(0, src);
    let sum = add_words(sum, dst);
    let sum = add_words(sum, &len.to_be_bytes());
    add_words(sum, &[0, next_header])
}

/// Folds a sum into 16 bits and complements it: the value to put in the checksum field.
/// A packet whose sum, checksum field included, folds to zero here is valid.
/// Two folds suffice for sums of fewer than 65,537 words.
#[inline(always)]
pub fn finish(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (after folding).
        let sum = add_words(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(finish(sum), !0xddf2);
    }

    #[test]
    fn a_packet_with_its_checksum_sums_to_zero() {
        let mut data = [0x12u8, 0x34, 0x00, 0x00, 0xab, 0xcd, 0xff, 0xff];
        let c = finish(add_words(0, &data));
        data[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(finish(add_words(0, &data)), 0);
    }
}
