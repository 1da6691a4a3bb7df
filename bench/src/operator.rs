//! The LB-IPAM operator's cold start.

use crate::{Ctx, report::Section};

pub fn run(_ctx: &Ctx) -> anyhow::Result<Section> {
    anyhow::bail!("not written yet")
}
