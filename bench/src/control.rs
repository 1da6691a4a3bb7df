//! Control-plane benchmarks on the API test kit with the real binaries.

use crate::{Ctx, report::Section};

pub fn announce(_ctx: &Ctx) -> anyhow::Result<Section> {
    anyhow::bail!("not written yet")
}

pub fn takeover(_ctx: &Ctx) -> anyhow::Result<Section> {
    anyhow::bail!("not written yet")
}

pub fn api_cost(_ctx: &Ctx) -> anyhow::Result<Section> {
    anyhow::bail!("not written yet")
}

pub fn spread(_ctx: &Ctx) -> anyhow::Result<Section> {
    anyhow::bail!("not written yet")
}

pub fn agent_resources(_ctx: &Ctx) -> anyhow::Result<Section> {
    anyhow::bail!("not written yet")
}
