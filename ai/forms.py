"""Forms of the ai pages."""
from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms

from .models import ModelVersion


class AssignModelForm(forms.Form):
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.all(), label="Model")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", "Use this model"))
