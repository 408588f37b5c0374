// Package ipmisim runs OpenIPMI's ipmi_sim (Debian package openipmi) as a
// real IPMI 2.0 BMC on a UDP port of 127.0.0.1, for tests and for the demo.
//
// Its configuration (lan.conf, the emulator command file and a
// chassis_control program) is embedded and written to a directory the caller
// gives. By default the chassis it controls is two files in that directory
// (power and boot device) and every command is logged, so a test can see
// what the BMC was told; Config.ChassisControl replaces that program with
// one that drives a real or QEMU machine. ipmi_sim speaks RMCP+ with cipher
// suite 3 (ipmitool -C 3), not 17.
//
// The embedded files follow OpenIPMI's documented formats (lanserv/lan.conf,
// lanserv/ipmisim1.emu and the chassis_control protocol of extcmd.c
// upstream); they were written for this project, not copied. They model a
// generic IPMI 2.0 BMC, not a specific vendor.
package ipmisim
