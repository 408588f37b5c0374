package redfishsim

import "time"

// Profile is a named vendor behaviour: a BMCConfig template whose fields
// reproduce what a family of real BMCs does. Start a BMC from one with
// Profile.Config, then set Name, Password, OnPower and the like.
type Profile struct {
	// Name is the profile's short name, such as "ilo5".
	Name string
	// Like says which real BMCs behave this way and where that is documented.
	Like string
	// Config is the template.
	Config BMCConfig
}

// Reset types without PowerCycle, as iDRAC and iLO 5 advertise them.
var resetTypesNoCycle = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "PushPowerButton"}

// bmcwebResetTypes are the reset types OpenBMC's bmcweb lists in its
// ResetActionInfo when the host allows every transition.
func bmcwebResetTypes() []string {
	return []string{"On", "ForceOff", "ForceOn", "ForceRestart", "GracefulRestart", "GracefulShutdown", "PowerCycle", "Nmi"}
}

// Profiles returns the built-in vendor profiles, each a behaviour seen on
// real BMCs:
//
//   - generic: a BMC that follows the standard: PowerCycle, a synchronous Boot
//     PATCH, LastResetTime and BootProgress, virtual media on the manager.
//   - ilo5: the Boot PATCH answers 200 but the new override reads back only
//     about 1.5 s later (and a boot before then uses the old one); no
//     PowerCycle; power transitions read PoweringOn/PoweringOff; no reboot
//     evidence in the system resource.
//   - idrac8: a PATCH carrying BootSourceOverrideMode answers 400, yet the
//     target and enabled flag are applied; the BIOS is in Legacy mode, so
//     the override reads back Legacy; errors carry a generic Message and the
//     useful text in @Message.ExtendedInfo; 8 sessions at most (RAC0218);
//     no PowerCycle; LastResetTime; virtual media on the system.
//   - megarac: the system refuses a Boot PATCH with 405; boot settings go to
//     the @Redfish.Settings object (.../SD, If-Match required) and apply at
//     the next power-on or reset; BootProgress.
//   - lazy: answers 204 to ForceRestart, GracefulRestart and PowerCycle and
//     does nothing, while reporting LastResetTime (so the lie shows).
//   - minimal: follows the standard but reports no reboot evidence at all
//     (no LastResetTime, no BootProgress), and powers a node on when asked to
//     restart it while it is off.
//   - openbmc: OpenBMC's bmcweb: the Reset action lists no allowable values
//     and points through @Redfish.ActionInfo to .../ResetActionInfo, whose
//     ResetType parameter lists them (all of them, PowerCycle included, by
//     default; set ResetTypes to model a BMC that lists fewer); a type not
//     listed answers 400 ActionParameterUnknown. LastResetTime is the
//     chassis's last power change in whole seconds, so a warm restart shows
//     only in BootProgress (LastState and LastStateTime).
func Profiles() []Profile {
	return []Profile{
		{Name: "generic", Like: "DMTF's public-rackmount1 mockup and BMCs that follow the standard",
			Config: BMCConfig{Manufacturer: "Contoso", Model: "3500", LastResetTime: true, BootProgress: true}},
		{Name: "ilo5", Like: "HPE iLO 5: boot override applied asynchronously, PoweringOn/PoweringOff, no PowerCycle",
			Config: BMCConfig{Manufacturer: "HPE", Model: "ProLiant DL380 Gen10", ResetTypes: resetTypesNoCycle,
				BootApplyDelay: 1500 * time.Millisecond, TransitionDelay: 1500 * time.Millisecond, ResetWhenOff: ResetWhenOffIgnore}},
		{Name: "idrac8", Like: "Dell iDRAC 8 (13G): 400 on BootSourceOverrideMode yet the target applies (ansible-collections/community.general#5091), RAC0218 session limit, ExtendedInfo messages",
			Config: BMCConfig{Manufacturer: "Dell Inc.", Model: "PowerEdge R630", ResetTypes: resetTypesNoCycle,
				RejectBootMode: true, ApplyDespiteReject: true, FirmwareMode: "Legacy", GenericMessages: true,
				LastResetTime: true, VirtualMedia: VirtualMediaOnSystem, Faults: Faults{MaxSessions: 8}}},
		{Name: "megarac", Like: "AMI MegaRAC: boot override only through @Redfish.Settings (DMTF/Redfish-Tacklebox#144)",
			Config: BMCConfig{Manufacturer: "ASRockRack", Model: "ROMED8-2T", SettingsObject: true, BootProgress: true}},
		{Name: "lazy", Like: "a BMC that acknowledges restarts and does nothing (field reports; bmclib's fallback hides it)",
			Config: BMCConfig{Manufacturer: "Contoso", Model: "3400", IgnoreResets: true, LastResetTime: true}},
		{Name: "minimal", Like: "older BMCs that report no LastResetTime or BootProgress",
			Config: BMCConfig{Manufacturer: "Contoso", Model: "2100", ResetWhenOff: ResetWhenOffPowerOn}},
		{Name: "openbmc", Like: "OpenBMC's bmcweb (redfish-core/lib/systems.hpp): reset types only in @Redfish.ActionInfo, LastResetTime from chassis0's LastStateChangeTime, BootProgress",
			Config: BMCConfig{Manufacturer: "Contoso", Model: "4100", ResetTypes: bmcwebResetTypes(), ResetActionInfo: true,
				LastResetTime: true, ChassisLastResetTime: true, BootProgress: true}},
	}
}

// LookupProfile returns the built-in profile called name.
func LookupProfile(name string) (Profile, bool) {
	for _, p := range Profiles() {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}
