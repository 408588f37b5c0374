#!/usr/bin/env python3
"""Regenerates the fixture trees in this directory (see README.md).

Run from pkg/devices/testdata: python3 mkfixtures.py
It deletes and rewrites dgx-h100/, fpga-node/, broken-node/ and empty-node/.
Symlinks are relative, like the kernel's, so the trees work under any root.
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))


class Tree:
    def __init__(self, name):
        self.root = os.path.join(HERE, name)
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root)

    def p(self, rel):
        return os.path.join(self.root, rel.lstrip("/"))

    def write(self, rel, content):
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)

    def mkdir(self, rel):
        os.makedirs(self.p(rel), exist_ok=True)

    def link(self, rel, target_rel):
        """Makes rel a relative symlink to target_rel (both tree-absolute)."""
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        target = os.path.relpath(self.p(target_rel), os.path.dirname(path))
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(target, path)

    def raw_link(self, rel, target):
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)

    # --- PCI -------------------------------------------------------------

    def pci(self, path, vendor, device, cls, numa=None, driver=None,
            subvendor="0x0000", subdevice="0x0000", cpulist=None, files=None):
        """Adds a PCI function at sys/devices/<path> (path ends in its BDF)."""
        bdf = os.path.basename(path)
        d = "/sys/devices/" + path
        self.write(d + "/vendor", vendor + "\n")
        self.write(d + "/device", device + "\n")
        self.write(d + "/class", cls + "\n")
        self.write(d + "/subsystem_vendor", subvendor + "\n")
        self.write(d + "/subsystem_device", subdevice + "\n")
        if numa is not None:
            self.write(d + "/numa_node", "%s\n" % numa)
        if cpulist is not None:
            self.write(d + "/local_cpulist", cpulist + "\n")
        self.write(d + "/modalias", "pci:v0000%sd0000%ssv0000%ssd0000%sbc%ssc%si%s\n" % (
            vendor[2:].upper(), device[2:].upper(), subvendor[2:].upper(),
            subdevice[2:].upper(), cls[2:4].upper(), cls[4:6].upper(), cls[6:8].upper()))
        if driver:
            self.mkdir("/sys/bus/pci/drivers/" + driver)
            self.link(d + "/driver", "/sys/bus/pci/drivers/" + driver)
        for k, v in (files or {}).items():
            self.write(d + "/" + k, v)
        self.link("/sys/bus/pci/devices/" + bdf, d)
        return d

    def bridge(self, path, numa=None):
        return self.pci(path, "0x10b5", "0xc010", "0x060400", numa=numa, driver="pcieport")

    def numa_nodes(self, cpulists):
        for i, cl in enumerate(cpulists):
            self.write("/sys/devices/system/node/node%d/cpulist" % i, cl + "\n")
            dist = " ".join("10" if j == i else "21" for j in range(len(cpulists)))
            self.write("/sys/devices/system/node/node%d/distance" % i, dist + "\n")
            self.write("/sys/devices/system/node/node%d/meminfo" % i,
                       "Node %d MemTotal:       1056462512 kB\nNode %d MemFree:        1000000000 kB\n" % (i, i))
            for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages"):
                self.write("/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/%s" % (i, f), "0\n")
        self.write("/proc/meminfo", "MemTotal:       2112925024 kB\nHugePages_Total:       0\n"
                   "Hugepagesize:       2048 kB\nHugetlb:               0 kB\n")
        self.write("/sys/devices/system/node/online", "0-%d\n" % (len(cpulists) - 1) if len(cpulists) > 1 else "0\n")

    # --- kinds -------------------------------------------------------------

    def nvidia_gpu(self, path, device, numa, minor, uuid, model, cpulist):
        bdf = os.path.basename(path)
        self.pci(path, "0x10de", device, "0x030200", numa=numa, driver="nvidia",
                 subvendor="0x10de", subdevice="0x16c1", cpulist=cpulist)
        self.write("/proc/driver/nvidia/gpus/%s/information" % bdf,
                   "Model: \t\t %s\nIRQ:   \t\t %d\nGPU UUID: \t %s\nVideo BIOS: \t 96.00.74.00.01\n"
                   "Bus Type: \t PCIe\nDMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\n"
                   "Bus Location: \t %s\nDevice Minor: \t %d\nGPU Excluded:\t No\n" % (
                       model, 200 + minor, uuid, bdf, minor))
        self.write("/dev/nvidia%d" % minor, "")

    def nvidia_shared_nodes(self):
        for n in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"):
            self.write("/dev/" + n, "")

    def nvidia_caps(self, gpus):
        """The MIG capability minors the driver lists for every possible GPU
        instance (0-14) and compute instance (0-7) of each GPU, in its
        order (config 1, monitor 2, gpu0/gi0/access 3, gpu0/gi0/ci0/access
        4, ...), and the config and monitor nodes, which exist on every
        host with the driver loaded. Nodes of GPU and compute instances are
        created on demand (nvidia-modprobe); tests that make MIG devices
        create them."""
        lines = ["config 1", "monitor 2"]
        m = 3
        for g in range(gpus):
            for gi in range(15):
                lines.append("gpu%d/gi%d/access %d" % (g, gi, m))
                m += 1
                for ci in range(8):
                    lines.append("gpu%d/gi%d/ci%d/access %d" % (g, gi, ci, m))
                    m += 1
        self.write("/proc/driver/nvidia-caps/mig-minors", "\n".join(lines) + "\n")
        self.write("/dev/nvidia-caps/nvidia-cap1", "")
        self.write("/dev/nvidia-caps/nvidia-cap2", "")

    def hca(self, pcidir, ibdev, guid, ports, uverbs, umad_base, fw="28.39.1002", board="MT_0000000838"):
        """ports: list of (state, phys_state, link_layer, rate, netdev or None)."""
        ib = pcidir + "/infiniband/" + ibdev
        self.write(ib + "/node_guid", guid + "\n")
        self.write(ib + "/sys_image_guid", guid + "\n")
        self.write(ib + "/node_type", "1: CA\n")
        self.write(ib + "/fw_ver", fw + "\n")
        self.write(ib + "/hca_type", "MT4129\n")
        self.write(ib + "/board_id", board + "\n")
        for i, (state, phys, ll, rate, netdev) in enumerate(ports, start=1):
            pd = ib + "/ports/%d" % i
            self.write(pd + "/state", state + "\n")
            self.write(pd + "/phys_state", phys + "\n")
            self.write(pd + "/link_layer", ll + "\n")
            self.write(pd + "/rate", rate + "\n")
            self.write(pd + "/lid", "0x%x\n" % (i + uverbs * 4))
            if netdev:
                self.write(pd + "/gid_attrs/ndevs/0", netdev + "\n")
        self.link("/sys/class/infiniband/" + ibdev, ib)
        v = pcidir + "/infiniband_verbs/uverbs%d" % uverbs
        self.write(v + "/ibdev", ibdev + "\n")
        self.write(v + "/dev", "231:%d\n" % (192 + uverbs))
        self.link("/sys/class/infiniband_verbs/uverbs%d" % uverbs, v)
        self.write("/dev/infiniband/uverbs%d" % uverbs, "")
        for i in range(len(ports)):
            n = umad_base + i
            for name, minor in (("umad%d" % n, n), ("issm%d" % n, 64 + n)):
                m = pcidir + "/infiniband_mad/" + name
                self.write(m + "/ibdev", ibdev + "\n")
                self.write(m + "/port", "%d\n" % (i + 1))
                self.write(m + "/dev", "231:%d\n" % minor)
                self.link("/sys/class/infiniband_mad/" + name, m)
                self.write("/dev/infiniband/" + name, "")

    def rdma_abi_files(self):
        """The class directories' abi_version files, regular files beside
        the device links on every host with the RDMA modules loaded."""
        self.write("/sys/class/infiniband_verbs/abi_version", "6\n")
        self.write("/sys/class/infiniband_mad/abi_version", "5\n")

    def netdev(self, pcidir, name, master=None):
        nd = pcidir + "/net/" + name
        self.write(nd + "/operstate", "up\n")
        self.write(nd + "/address", "00:00:00:00:00:00\n")
        if master:
            self.mkdir("/sys/devices/virtual/net/" + master)
            self.link(nd + "/master", "/sys/devices/virtual/net/" + master)
        self.link("/sys/class/net/" + name, nd)


PCI_IDS = """# Excerpt of pci.ids (https://pci-ids.ucw.cz) for the dgx-h100 fixture.
10b5  PLX Technology, Inc.
\tc010  PEX89104 PCIe Gen5 Switch
10de  NVIDIA Corporation
\t22a3  GH100 [H100 NVSwitch]
\t2330  GH100 [H100 SXM5 80GB]
15b3  Mellanox Technologies
\t1021  MT2910 Family [ConnectX-7]
1a03  ASPEED Technology, Inc.
\t2000  ASPEED Graphics Family
C 02  Network controller
\t00  Ethernet controller
\t07  Infiniband controller
C 03  Display controller
\t00  VGA compatible controller
\t02  3D controller
C 06  Bridge
\t04  PCI bridge
\t80  Bridge
"""


def dgx_h100():
    t = Tree("dgx-h100")
    t.numa_nodes(["0-55,112-167", "56-111,168-223"])
    # (root bus, HCA bus, GPU bus, ibdev, minor); buses from a DGX H100's
    # lspci (ibp24s0 = mlx5_0 at 0x18 ...). Minors 2 and 3 are swapped on
    # purpose: minors follow the driver's probe order, not bus order.
    pairs = [
        (0x15, 0x18, 0x1b, "mlx5_0", 0),
        (0x3d, 0x40, 0x43, "mlx5_3", 1),
        (0x4c, 0x4f, 0x52, "mlx5_4", 3),
        (0x5b, 0x5e, 0x61, "mlx5_5", 2),
        (0x97, 0x9a, 0x9d, "mlx5_6", 4),
        (0xbd, 0xc0, 0xc3, "mlx5_9", 5),
        (0xcb, 0xce, 0xd1, "mlx5_10", 6),
        (0xd9, 0xdc, 0xdf, "mlx5_11", 7),
    ]
    uverbs = {"mlx5_0": 0, "mlx5_1": 1, "mlx5_2": 2, "mlx5_3": 3, "mlx5_4": 4, "mlx5_5": 5,
              "mlx5_6": 6, "mlx5_7": 7, "mlx5_8": 8, "mlx5_9": 9, "mlx5_10": 10, "mlx5_11": 11}
    for root, hbus, gbus, ibdev, minor in pairs:
        numa = 0 if root < 0x80 else 1
        cpus = ["0-55,112-167", "56-111,168-223"][numa]
        rp = "pci0000:%02x/0000:%02x:01.0" % (root, root)
        up = rp + "/0000:%02x:00.0" % (root + 1)
        dn_h = up + "/0000:%02x:00.0" % (root + 2)
        dn_g = up + "/0000:%02x:03.0" % (root + 2)
        t.bridge(rp, numa)
        t.bridge(up, numa)
        t.bridge(dn_h, numa)
        t.bridge(dn_g, numa)
        hd = t.pci(dn_h + "/0000:%02x:00.0" % hbus, "0x15b3", "0x1021", "0x020700", numa=numa,
                   driver="mlx5_core", subvendor="0x15b3", subdevice="0x0041", cpulist=cpus)
        t.hca(hd, ibdev, "b83f:d203:00%02x:%04x" % (hbus, hbus * 16),
              [("4: ACTIVE", "5: LinkUp", "InfiniBand", "400 Gb/sec (4X NDR)", None)],
              uverbs[ibdev], uverbs[ibdev])
        t.netdev(hd, "ibp%ds0" % hbus)
        t.nvidia_gpu(dn_g + "/0000:%02x:00.0" % gbus, "0x2330", numa, minor,
                     "GPU-%08x-1111-2222-3333-4444%08x" % (gbus, minor), "NVIDIA H100 80GB HBM3", cpus)
    # Storage NICs: two dual-port ConnectX-7 in Ethernet mode (RoCE), as on a
    # real DGX H100: not bonded, no default route, each port its own PCI
    # function and RDMA device. Both ports of a card sit under one root
    # port, so a naive distance makes them closer than any two compute
    # rails: they must never land in slipway.dev/hca.
    for root, bus, names in ((0x28, 0x29, ("mlx5_1", "mlx5_2")), (0xa9, 0xaa, ("mlx5_7", "mlx5_8"))):
        numa = 0 if root < 0x80 else 1
        rp = "pci0000:%02x/0000:%02x:01.0" % (root, root)
        t.bridge(rp, numa)
        for fn, ibdev in enumerate(names):
            d = t.pci(rp + "/0000:%02x:00.%d" % (bus, fn), "0x15b3", "0x1021", "0x020000", numa=numa,
                      driver="mlx5_core", subvendor="0x15b3", subdevice="0x0040")
            nd = "enp%ds0f%dnp%d" % (bus, fn, fn)
            t.hca(d, ibdev, "a088:c203:00%02x:%04x" % (bus, fn), [
                ("4: ACTIVE", "5: LinkUp", "Ethernet", "200 Gb/sec (4X HDR)", nd)], uverbs[ibdev], uverbs[ibdev])
            t.netdev(d, nd)
    # The host's own network: an onboard Intel X550 (8086:1563, ixgbe) whose
    # eno1 carries the default route. Not an RDMA device.
    t.bridge("pci0000:00/0000:00:1b.0", 0)
    d = t.pci("pci0000:00/0000:00:1b.0/0000:03:00.0", "0x8086", "0x1563", "0x020000", numa=0, driver="ixgbe",
              subvendor="0x8086", subdevice="0x0001")
    t.netdev(d, "eno1")
    # NVSwitch bridges (10de:22a3, class 0x0680) and the BMC's ASPEED VGA.
    t.bridge("pci0000:00/0000:00:1c.0", 0)
    t.pci("pci0000:00/0000:00:1c.0/0000:02:00.0", "0x1a03", "0x2000", "0x030000", numa=0, driver="ast")
    for i in range(4):
        t.pci("pci0000:00/0000:00:1d.%d/0000:%02x:00.0" % (i, 5 + i), "0x10de", "0x22a3", "0x068000",
              numa=0, driver="nvidia-nvswitch")
        t.bridge("pci0000:00/0000:00:1d.%d" % i, 0)
    t.nvidia_shared_nodes()
    t.nvidia_caps(8)
    t.write("/dev/infiniband/rdma_cm", "")
    # A pci.ids for the devices above, where a host keeps it, so that ghw
    # (the benchmark's peer) names them from this root and not the host.
    t.write("/usr/share/hwdata/pci.ids", PCI_IDS)
    t.write("/proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
            "eno1\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
            "eno1\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n")
    t.rdma_abi_files()


def fpga_node():
    t = Tree("fpga-node")
    t.numa_nodes(["0-31", "32-63"])
    # Two Alveo U250 cards: mgmt PF .0 (10ee:5004, xclmgmt) and user PF .1
    # (10ee:5005, xocl) each.
    for card, (root, bus, numa, inst, render) in enumerate(((0x16, 0x17, 0, 256, 128), (0x64, 0x65, 1, 257, 129))):
        rp = "pci0000:%02x/0000:%02x:00.0" % (root, root)
        t.bridge(rp, numa)
        # XRT's management function: rom.m.N (shell name) and xmc.m.N
        # (serial); interface_uuids (the shell interface bitstreams are
        # built against) differs from logic_uuids (the logic loaded).
        mg = t.pci(rp + "/0000:%02x:00.0" % bus, "0x10ee", "0x5004", "0x058000", numa=numa,
                   driver="xclmgmt", subvendor="0x10ee", subdevice="0x000e", files={
                       "mgmt_pf": "", "instance": "%d\n" % inst,
                       "interface_uuids": "15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2\n",
                       "logic_uuids": "a2b2c4b5e8d1f7e4a9c0b1d2e3f40516\n",
                       "rom.m.%d/VBNV" % inst: "xilinx_u250_gen3x16_xdma_shell_4_1\n",
                       "rom.m.%d/timestamp" % inst: "0\n",
                       "xmc.m.%d/serial_num" % inst: "21330621T0%02d\n" % card,
                   })
        t.write("/dev/xclmgmt%d" % inst, "")
        us = t.pci(rp + "/0000:%02x:00.1" % bus, "0x10ee", "0x5005", "0x058000", numa=numa,
                   driver="xocl", subvendor="0x10ee", subdevice="0x000e", files={
                       "user_pf": "", "instance": "%d\n" % (inst + 256),
                       "rom.u.%d/VBNV" % (inst + 256): "xilinx_u250_gen3x16_xdma_shell_4_1\n",
                       "drm/renderD%d/dev" % render: "226:%d\n" % render,
                   })
        t.write("/dev/dri/renderD%d" % render, "")
    # One Intel FPGA SmartNIC N6001 (8086:bcce subsystem 8086:1771) under DFL.
    rp = "pci0000:b0/0000:b0:02.0"
    t.bridge(rp, 1)
    d = t.pci(rp + "/0000:b1:00.0", "0x8086", "0xbcce", "0x120000", numa=1, driver="dfl-pci",
              subvendor="0x8086", subdevice="0x1771")
    reg = d + "/fpga_region/region0"
    t.write(reg + "/dfl-fme.0/dev", "240:0\n")
    t.write(reg + "/dfl-fme.0/bitstream_id", "0x50102022267a9ed\n")
    t.write(reg + "/dfl-fme.0/ports_num", "1\n")
    t.write(reg + "/dfl-fme.0/socket_id", "0\n")
    t.write(reg + "/dfl-fme.0/dfl-fme-region.1/fpga_region/region1/compat_id", "3f54a1a5b3f0445b8f8cf0b0c7a02d8b\n")
    t.write(reg + "/dfl-port.0/dev", "241:0\n")
    t.write(reg + "/dfl-port.0/id", "0\n")
    t.write(reg + "/dfl-port.0/afu_id", "9aeffe5f84570612c72e0a2e8f5e3c1a\n")
    t.link("/sys/class/fpga_region/region0", reg)
    t.write("/dev/dfl-port.0", "")
    t.write("/dev/dfl-fme.0", "")


def broken_node():
    t = Tree("broken-node")
    t.numa_nodes(["0-15"])
    # GPU with garbage numa_node: reported, NUMA unknown.
    rp = "pci0000:00/0000:00:01.0"
    t.bridge(rp, 0)
    t.nvidia_gpu(rp + "/0000:01:00.0", "0x20b5", "banana", 0, "GPU-0badc0de-0000-0000-0000-000000000001",
                 "NVIDIA A100 80GB PCIe", "0-15")
    # GPU whose proc information file is missing and whose device node is
    # absent: reported unhealthy, no invented minor.
    rp = "pci0000:00/0000:00:02.0"
    t.bridge(rp, 0)
    t.pci(rp + "/0000:02:00.0", "0x10de", "0x20b5", "0x030200", numa=0, driver="nvidia")
    # NVIDIA function without a class file: cannot be classified, skipped.
    d = t.pci("pci0000:00/0000:00:03.0/0000:03:00.0", "0x10de", "0x20b5", "0x030200", numa=0)
    os.remove(t.p(d + "/class"))
    t.bridge("pci0000:00/0000:00:03.0", 0)
    # Empty vendor file: skipped.
    d = t.pci("pci0000:00/0000:00:04.0/0000:04:00.0", "0x10de", "0x20b5", "0x030200", numa=0)
    t.write(d + "/vendor", "")
    t.bridge("pci0000:00/0000:00:04.0", 0)
    # Dangling symlink in the PCI device list.
    t.raw_link("/sys/bus/pci/devices/0000:09:00.0", "../../../devices/pci0000:00/0000:00:09.0/0000:09:00.0")
    # A non-PCI name in the list (left by hand): ignored.
    t.write("/sys/bus/pci/devices/README", "not a device\n")
    # HCA with port 1 ACTIVE and port 2 DOWN (not cabled): healthy, port 2
    # listed as down; its node_guid is missing (attribute left out, not
    # invented).
    rp = "pci0000:00/0000:00:05.0"
    t.bridge(rp, 0)
    hd = t.pci(rp + "/0000:05:00.0", "0x15b3", "0x101b", "0x020700", numa=0, driver="mlx5_core")
    t.hca(hd, "mlx5_0", "1c34:da03:0055:0000", [
        ("4: ACTIVE", "5: LinkUp", "InfiniBand", "200 Gb/sec (4X HDR)", None),
        ("1: DOWN", "3: Disabled", "InfiniBand", "10 Gb/sec (4X SDR)", None)], 0, 0)
    os.remove(t.p(hd + "/infiniband/mlx5_0/node_guid"))
    # Single-port HCA whose port is down: unhealthy.
    rp = "pci0000:00/0000:00:07.0"
    t.bridge(rp, 0)
    hd = t.pci(rp + "/0000:07:00.0", "0x15b3", "0x101b", "0x020700", numa=0, driver="mlx5_core")
    t.hca(hd, "mlx5_1", "1c34:da03:0077:0000", [
        ("1: DOWN", "2: Polling", "InfiniBand", "10 Gb/sec (4X SDR)", None)], 1, 2)
    t.rdma_abi_files()
    # Legacy OPAE PAC Arria10 (8086:09c4) with an AFU ID of all f: unhealthy.
    rp = "pci0000:00/0000:00:06.0"
    t.bridge(rp, 0)
    fd = t.pci(rp + "/0000:06:00.0", "0x8086", "0x09c4", "0x120000", numa="-1", driver="intel-fpga-pci")
    dev = fd + "/fpga/intel-fpga-dev.0"
    t.write(dev + "/intel-fpga-port.0/afu_id", "ffffffffffffffffffffffffffffffff\n")
    t.write(dev + "/intel-fpga-port.0/dev", "242:0\n")
    t.write(dev + "/intel-fpga-fme.0/pr/interface_id", "ce48969398f05f33946d560708be108a\n")
    t.write(dev + "/intel-fpga-fme.0/bitstream_id", "0x123402506172a46\n")
    t.link("/sys/class/fpga/intel-fpga-dev.0", dev)
    t.write("/dev/intel-fpga-port.0", "")
    t.write("/dev/intel-fpga-fme.0", "")
    t.write("/dev/nvidia0", "")
    t.write("/dev/nvidiactl", "")


def empty_node():
    t = Tree("empty-node")
    t.numa_nodes(["0-7"])
    t.write("/sys/bus/pci/devices/.gitkeep", "")


dgx_h100()
fpga_node()
broken_node()
empty_node()
