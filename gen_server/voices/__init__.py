"""The voice library: consent phrases (:mod:`.phrases`), the service (:mod:`.service`), the audit log
(:mod:`.audit`) and the installation's protected voices (:mod:`.protected`)."""
