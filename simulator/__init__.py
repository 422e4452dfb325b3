"""The virtual factory: machines that behave like real ones and speak OPC UA, Modbus or MQTT. Imports nothing of ours."""
