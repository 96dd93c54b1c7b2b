//! QEMU's `edu` teaching device (hw/misc/edu.c, PCI 1234:11e8), as far as a VFIO user
//! sees it: a 256-byte config space with a writable command register and a 1 MiB BAR 0
//! with the identification register and a DMA engine between guest memory and a 4 KiB
//! buffer. DMA goes through the device's IOMMU unit; it completes at once (QEMU takes a
//! 100 ms timer), and a DMA the IOMMU refuses moves nothing, as on QEMU.

use crate::platform::DeviceDesc;

/// PCI vendor id.
pub const EDU_VENDOR: u16 = 0x1234;
/// PCI device id.
pub const EDU_DEVICE: u16 = 0x11e8;
/// The identification register's value (major 1, minor 0, "ed").
pub const EDU_IDENT: u32 = 0x0100_00ed;
/// BAR 0 size.
pub const EDU_BAR0_SIZE: u64 = 1 << 20;
/// Config space size (a conventional PCI device).
pub const EDU_CONFIG_SIZE: u64 = 256;
/// Offset of the DMA buffer in the DMA engine's address space.
pub const EDU_DMA_BUF: u64 = 0x40000;
/// Size of the DMA buffer.
pub const EDU_DMA_BUF_SIZE: u64 = 4096;
/// The DMA engine's address mask: 28 bits.
const EDU_DMA_MASK: u64 = (1 << 28) - 1;
const CMD_RUN: u64 = 1;
const CMD_TO_PCI: u64 = 2;
/// PCI command register bits a driver may set: I/O, memory, bus master, and the rest of
/// the low byte's usual writable bits.
const PCI_COMMAND_WRITABLE: u16 = 0x0547;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// edu answers 4-byte accesses, and 8-byte ones from the DMA registers on.
fn access_ok(addr: u64, size: usize) -> bool {
    size == 4 || (addr >= 0x80 && size == 8)
}

/// One edu device's state.
#[derive(Debug)]
pub(crate) struct Edu {
    command: u16,
    liveness: u32,
    dma_src: u64,
    dma_dst: u64,
    dma_cnt: u64,
    dma_cmd: u64,
    buf: Vec<u8>,
}

/// A DMA the engine wants done: direction and where.
pub(crate) enum DmaOp {
    /// Read `len` bytes of guest memory at `iova` into the buffer at `buf_off`.
    FromMemory {
        iova: u64,
        buf_off: usize,
        len: usize,
    },
    /// Write `len` bytes of the buffer at `buf_off` to guest memory at `iova`.
    ToMemory {
        iova: u64,
        buf_off: usize,
        len: usize,
    },
}

impl Edu {
    pub(crate) fn new() -> Self {
        Self {
            command: 0,
            liveness: 0,
            dma_src: 0,
            dma_dst: 0,
            dma_cnt: 0,
            dma_cmd: 0,
            buf: vec![0; EDU_DMA_BUF_SIZE as usize],
        }
    }

    /// Bus mastering is on: the device may issue DMA.
    pub(crate) fn bus_master(&self) -> bool {
        self.command & PCI_COMMAND_MASTER != 0
    }

    /// A config-space read of `buf.len()` bytes at `off` (little endian).
    pub(crate) fn config_read(&self, desc: &DeviceDesc, off: u64, buf: &mut [u8]) {
        let _ = desc;
        let mut space = [0u8; EDU_CONFIG_SIZE as usize];
        space[0..2].copy_from_slice(&EDU_VENDOR.to_le_bytes());
        space[2..4].copy_from_slice(&EDU_DEVICE.to_le_bytes());
        space[4..6].copy_from_slice(&self.command.to_le_bytes());
        space[8] = 0x10; // revision
        space[0x0a..0x0c].copy_from_slice(&0x00ffu16.to_le_bytes()); // class "other"
        space[0x2c..0x2e].copy_from_slice(&0x1af4u16.to_le_bytes()); // subsystem vendor
        space[0x2e..0x30].copy_from_slice(&0x1100u16.to_le_bytes()); // subsystem
        space[0x3d] = 1; // interrupt pin A
        for (i, b) in buf.iter_mut().enumerate() {
            *b = space.get(off as usize + i).copied().unwrap_or(0xff);
        }
    }

    /// A config-space write: only the command register takes effect.
    pub(crate) fn config_write(&mut self, off: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let at = off + i as u64;
            if at == 4 || at == 5 {
                let shift = (at - 4) * 8;
                let mask = PCI_COMMAND_WRITABLE & (0xff << shift);
                self.command = (self.command & !mask) | ((b as u16) << shift & mask);
            }
        }
    }

    /// A BAR 0 read; accesses edu does not answer read as all ones, as on QEMU.
    pub(crate) fn mmio_read(&self, addr: u64, size: usize) -> u64 {
        let ones = u64::MAX >> (64 - 8 * size as u32);
        if !access_ok(addr, size) {
            return ones;
        }
        let value = match addr {
            0x00 => EDU_IDENT as u64,
            0x04 => !self.liveness as u64 & 0xFFFF_FFFF,
            0x80 => self.dma_src,
            0x88 => self.dma_dst,
            0x90 => self.dma_cnt,
            0x98 => self.dma_cmd,
            _ => return ones,
        };
        value & ones
    }

    /// A BAR 0 write; returns the DMA to run when it starts one.
    pub(crate) fn mmio_write(&mut self, addr: u64, size: usize, value: u64) -> Option<DmaOp> {
        if !access_ok(addr, size) {
            return None;
        }
        // The DMA registers are frozen while a transfer runs.
        let running = self.dma_cmd & CMD_RUN != 0;
        match addr {
            0x04 => self.liveness = value as u32,
            0x80 if !running => self.dma_src = value,
            0x88 if !running => self.dma_dst = value,
            0x90 if !running => self.dma_cnt = value,
            0x98 if !running => {
                self.dma_cmd = value;
                if value & CMD_RUN != 0 {
                    return self.start_dma();
                }
            }
            _ => {}
        }
        None
    }

    /// Validate the transfer (QEMU aborts on a buffer range outside the 4 KiB; here the
    /// transfer is dropped) and describe it.
    fn start_dma(&mut self) -> Option<DmaOp> {
        let (buf_addr, mem) = if self.dma_cmd & CMD_TO_PCI != 0 {
            (self.dma_src, self.dma_dst)
        } else {
            (self.dma_dst, self.dma_src)
        };
        let in_buf = buf_addr >= EDU_DMA_BUF
            && self
                .dma_cnt
                .checked_add(buf_addr)
                .is_some_and(|end| end <= EDU_DMA_BUF + EDU_DMA_BUF_SIZE);
        if !in_buf {
            self.dma_cmd &= !CMD_RUN;
            return None;
        }
        let buf_off = (buf_addr - EDU_DMA_BUF) as usize;
        let len = self.dma_cnt as usize;
        let iova = mem & EDU_DMA_MASK;
        Some(if self.dma_cmd & CMD_TO_PCI != 0 {
            DmaOp::ToMemory { iova, buf_off, len }
        } else {
            DmaOp::FromMemory { iova, buf_off, len }
        })
    }

    /// The DMA buffer, for the transfer.
    pub(crate) fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The transfer is over (done or refused by the IOMMU).
    pub(crate) fn finish_dma(&mut self) {
        self.dma_cmd &= !CMD_RUN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ident_reads_with_four_bytes_only() {
        let edu = Edu::new();
        assert_eq!(edu.mmio_read(0, 4), EDU_IDENT as u64);
        assert_eq!(edu.mmio_read(0, 2), 0xFFFF);
    }

    #[test]
    fn starting_a_dma_outside_the_buffer_moves_nothing() {
        let mut edu = Edu::new();
        edu.mmio_write(0x80, 8, 0x1000);
        edu.mmio_write(0x88, 8, 0x0);
        edu.mmio_write(0x90, 8, 16);
        assert!(edu.mmio_write(0x98, 8, CMD_RUN).is_none());
        assert_eq!(edu.mmio_read(0x98, 8) & CMD_RUN, 0);
    }

    #[test]
    fn command_register_keeps_only_writable_bits() {
        let mut edu = Edu::new();
        edu.config_write(4, &0xFFFFu16.to_le_bytes());
        assert!(edu.bus_master());
        let mut cmd = [0u8; 2];
        edu.config_read(&DeviceDesc::new("edu", 0, 2, 0), 4, &mut cmd);
        assert_eq!(u16::from_le_bytes(cmd), PCI_COMMAND_WRITABLE);
    }
}
