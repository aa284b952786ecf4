"""From a gate graph to a bitstream on a board: board profiles, the fit estimate, the
tool runners, build, export and flash."""
