"""Devices and channels (SNS push, SMS, e-mail) that tell users their turn has come."""
