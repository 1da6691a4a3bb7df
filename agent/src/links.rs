//! The machine's network interfaces, from rtnetlink: a full dump, and a stream that fires on
//! every link change (added, removed, renamed, up/down, carrier, MAC).

use std::collections::BTreeMap;

use futures::{Stream, StreamExt, TryStreamExt};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::{
    Handle,
    constants::RTMGRP_LINK,
    new_connection,
    sys::{AsyncSocket, SocketAddr},
};
use serde::Serialize;

/// Errors talking to rtnetlink.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("rtnetlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("listing links: {0}")]
    List(#[from] rtnetlink::Error),
}

/// One interface as the announcer needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    /// Administratively up and with carrier: frames can come in and go out.
    pub up: bool,
    pub loopback: bool,
    /// A bond slave or bridge port: frames are handled by its controller, not by it.
    pub has_controller: bool,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Option<Self> {
        let mut name = None;
        let mut mac = None;
        let mut has_controller = false;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                LinkAttribute::Controller(_) => has_controller = true,
                _ => {}
            }
        }
        let flags = msg.header.flags;
        Some(Link {
            index: msg.header.index,
            name: name?,
            mac,
            up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
            loopback: flags.contains(LinkFlags::Loopback)
                || msg.header.link_layer_type == LinkLayerType::Loopback,
            has_controller,
        })
    }

    /// Whether announcements can be made on this link at all.
    pub fn announceable(&self) -> bool {
        self.up && !self.loopback && !self.has_controller && self.mac.is_some()
    }
}

/// A handle for dumps and a stream that yields once per link change.
pub fn watch() -> Result<(Handle, impl Stream<Item = ()> + Unpin), LinkError> {
    let (mut connection, handle, messages) = new_connection()?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))?;
    tokio::spawn(connection);
    Ok((handle, messages.map(|_| ())))
}

/// Every link, by ifindex.
pub async fn dump(handle: &Handle) -> Result<BTreeMap<u32, Link>, LinkError> {
    let mut links = BTreeMap::new();
    let mut stream = handle.link().get().execute();
    while let Some(msg) = stream.try_next().await? {
        if let Some(link) = Link::from_message(&msg) {
            links.insert(link.index, link);
        }
    }
    Ok(links)
}
